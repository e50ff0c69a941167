package dev.strata.qmp;

import dev.strata.json.JsonStreamer;
import dev.strata.json.JsonWriter;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One client connection: greeting, capabilities negotiation, then requests read, dispatched and
 * answered in order. Every error (bad JSON, bad request, failed command) is answered and the
 * session carries on; only end of input or a socket error ends it.
 *
 * <p>Concurrency: the reader thread parses and dispatches; all output (replies and events from
 * other threads) goes through an outbox drained by a writer thread, so the order of a session's
 * replies is the order of its requests, and a client that stops reading costs at most {@link
 * #MAX_PENDING_BYTES} before it is disconnected, never a blocked command.
 */
public final class QmpSession {
    /** Output a client may leave unread before Strata drops the connection. */
    static final long MAX_PENDING_BYTES = 64L << 20;

    private static final Logger LOG = LoggerFactory.getLogger(QmpSession.class);

    /** What the writer thread takes from the outbox. */
    private sealed interface Out {}

    private record Bytes(byte[] data) implements Out {}

    private record Action(Runnable run) implements Out {}

    private record Stop() implements Out {}

    // set at construction, never changed
    private final Qmp qmp;
    private final SocketChannel channel;
    private final boolean pretty;

    // written by the command thread under the command lock, read by any thread
    private volatile boolean negotiated;
    private volatile boolean oobEnabled;

    private final LinkedBlockingQueue<Out> outbox = new LinkedBlockingQueue<>();
    private final AtomicLong pendingBytes = new AtomicLong();
    private final AtomicBoolean closed = new AtomicBoolean();

    QmpSession(Qmp qmp, SocketChannel channel, boolean pretty) {
        this.qmp = qmp;
        this.channel = channel;
        this.pretty = pretty;
    }

    public boolean negotiated() {
        return negotiated;
    }

    public boolean oobEnabled() {
        return oobEnabled;
    }

    /** Leaves negotiation mode (qmp_capabilities), with OOB if the client asked for it. */
    public void completeNegotiation(boolean oob) {
        this.oobEnabled = oob;
        this.negotiated = true;
    }

    /** The thread writing the outbox, once {@link #run} has started it. */
    private volatile Thread writer;

    /** Serves the connection until the client goes away; runs on the session's own thread. */
    void run() {
        qmp.register(this);
        Thread writer = Thread.ofVirtual().name("qmp-writer").start(this::drainOutbox);
        this.writer = writer;
        try {
            send(qmp.greeting());
            JsonStreamer streamer = new JsonStreamer(new JsonStreamer.Sink() {
                @Override
                public void value(Object json) {
                    Qmp.Reply reply = qmp.dispatch(QmpSession.this, json);
                    send(reply.message());
                    if (reply.after() != null) {
                        enqueue(new Action(reply.after()), 0);
                    }
                }

                @Override
                public void error(String message) {
                    send(Qmp.errorReply(ErrorClass.GenericError, message, null, false));
                }
            });
            ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
            while (!closed.get()) {
                buf.clear();
                int n = channel.read(buf);
                if (n < 0) {
                    break;
                }
                streamer.feed(buf.array(), 0, n);
            }
        } catch (IOException e) {
            if (!closed.get()) {
                LOG.debug("QMP session ended: {}", e.toString());
            }
        } finally {
            qmp.unregister(this);
            // let the writer finish what is queued (a final reply) before the socket closes
            enqueue(new Stop(), 0);
            try {
                writer.join(5_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            close();
        }
    }

    /** Queues one message for the client. */
    void send(Map<String, Object> message) {
        // QEMU's monitor ends every output line with CRLF, the lines inside a pretty message too
        String text = pretty ? JsonWriter.writePretty(message).replace("\n", "\r\n") : JsonWriter.write(message);
        // the message and its line end go out in one write
        byte[] bytes = (text + "\r\n").getBytes(StandardCharsets.US_ASCII);
        enqueue(new Bytes(bytes), bytes.length);
    }

    private void enqueue(Out out, long size) {
        if (closed.get()) {
            // what was to run after a reply (starting jobs) must run even if the client went away
            if (out instanceof Action(Runnable run)) {
                run.run();
            }
            return;
        }
        if (pendingBytes.addAndGet(size) > MAX_PENDING_BYTES) {
            LOG.warn("QMP client is not reading its replies; dropping the connection");
            close();
            return;
        }
        outbox.add(out);
    }

    private void drainOutbox() {
        try {
            while (true) {
                Out out = outbox.take();
                switch (out) {
                    case Bytes(byte[] data) -> {
                        write(ByteBuffer.wrap(data));
                        pendingBytes.addAndGet(-data.length);
                    }
                    case Action(Runnable run) -> run.run();
                    case Stop() -> {
                        return;
                    }
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (IOException e) {
            LOG.debug("QMP write failed: {}", e.toString());
            close();
        }
    }

    private void write(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            channel.write(b);
        }
    }

    /**
     * Closes the connection once what is queued has been written (the events of a shutdown: how
     * each job ended), waiting at most {@code millis} for a client that does not read.
     */
    public void closeAfterPending(long millis) {
        Thread w = writer;
        if (w != null && !closed.get()) {
            enqueue(new Stop(), 0);
            try {
                w.join(millis);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        close();
    }

    /** Closes the connection; a blocked reader wakes with end of input. */
    public void close() {
        if (closed.compareAndSet(false, true)) {
            java.util.List<Out> left = new java.util.ArrayList<>();
            outbox.drainTo(left);
            for (Out out : left) {
                if (out instanceof Action(Runnable run)) {
                    run.run();
                }
            }
            outbox.add(new Stop());
            try {
                channel.close();
            } catch (IOException e) {
                LOG.debug("closing QMP socket: {}", e.toString());
            }
        }
    }
}
