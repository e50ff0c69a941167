package dev.strata.demo;

import dev.strata.json.Json;
import dev.strata.json.JsonWriter;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * The demo's QMP client: one UNIX socket, every message sent and received shown on the console
 * (the point of the demo is to show the exchange), events kept in arrival order for
 * {@link #awaitEvent}.
 */
final class DemoQmp implements AutoCloseable {
    private final SocketChannel channel;
    private final PrintStream console;
    private final LinkedBlockingQueue<Map<String, Object>> replies = new LinkedBlockingQueue<>();
    private final List<Map<String, Object>> events = new ArrayList<>();
    private final Thread reader;
    private boolean quiet;
    private long nextId = 1;

    private DemoQmp(SocketChannel channel, PrintStream console) {
        this.channel = channel;
        this.console = console;
        this.reader = Thread.ofVirtual().name("demo-qmp-reader").start(this::readLoop);
    }

    static DemoQmp connect(Path socket, PrintStream console) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(socket));
        DemoQmp q = new DemoQmp(ch, console);
        Map<String, Object> greeting = q.next();
        console.println("<- " + JsonWriter.write(greeting));
        q.execute("qmp_capabilities", null);
        return q;
    }

    /** While true, polling commands (progress) are not echoed. */
    void quiet(boolean quiet) {
        this.quiet = quiet;
    }

    /** Sends a command; returns its reply ({@code return} or {@code error} member). */
    Map<String, Object> execute(String command, Map<String, Object> arguments) throws IOException {
        Map<String, Object> req = new LinkedHashMap<>();
        req.put("execute", command);
        if (arguments != null) {
            req.put("arguments", arguments);
        }
        String id = "demo-" + nextId++;
        req.put("id", id);
        String text = JsonWriter.write(req);
        if (!quiet) {
            console.println("-> " + text);
        }
        ByteBuffer b = ByteBuffer.wrap((text + "\n").getBytes(StandardCharsets.UTF_8));
        while (b.hasRemaining()) {
            channel.write(b);
        }
        Map<String, Object> reply = next();
        if (!quiet) {
            console.println("<- " + JsonWriter.write(reply));
        }
        return reply;
    }

    /** Runs a command that must succeed and returns its {@code return} value. */
    Object ok(String command, Map<String, Object> arguments) throws IOException {
        Map<String, Object> reply = execute(command, arguments);
        if (!reply.containsKey("return")) {
            throw new DemoFailure(command + " failed: " + JsonWriter.write(reply.get("error")));
        }
        return reply.get("return");
    }

    /** Waits for the first event not yet taken that matches; events taken are removed. */
    Map<String, Object> awaitEvent(Predicate<Map<String, Object>> match, long timeoutMs) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        synchronized (events) {
            while (true) {
                for (int i = 0; i < events.size(); i++) {
                    if (match.test(events.get(i))) {
                        return events.remove(i);
                    }
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new DemoFailure("timed out waiting for an event");
                }
                TimeUnit.NANOSECONDS.timedWait(events, left);
            }
        }
    }

    /** Whether an event that matches has arrived (not taken). */
    boolean hasEvent(Predicate<Map<String, Object>> match) {
        synchronized (events) {
            return events.stream().anyMatch(match);
        }
    }

    /** Drops the events received so far. */
    void forgetEvents() {
        synchronized (events) {
            events.clear();
        }
    }

    private Map<String, Object> next() throws IOException {
        try {
            Map<String, Object> m = replies.poll(60, TimeUnit.SECONDS);
            if (m == null) {
                throw new IOException("no reply from the daemon within 60 s");
            }
            if (m.containsKey("closed")) {
                throw new IOException("the daemon closed the QMP connection");
            }
            return m;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    @SuppressWarnings("unchecked")
    private void readLoop() {
        ByteArrayOutputStream line = new ByteArrayOutputStream();
        ByteBuffer buf = ByteBuffer.allocate(64 << 10);
        try {
            while (channel.read(buf.clear()) > 0) {
                buf.flip();
                while (buf.hasRemaining()) {
                    byte c = buf.get();
                    if (c != '\n') {
                        line.write(c);
                        continue;
                    }
                    String text = line.toString(StandardCharsets.UTF_8).strip();
                    line.reset();
                    if (text.isEmpty()) {
                        continue;
                    }
                    Map<String, Object> msg = (Map<String, Object>) Json.parse(text);
                    if (msg.containsKey("event")) {
                        console.println("<- " + text);
                        synchronized (events) {
                            events.add(msg);
                            events.notifyAll();
                        }
                    } else {
                        replies.add(msg);
                    }
                }
            }
        } catch (IOException | RuntimeException e) {
            // the connection ended; next() reports it
        }
        replies.add(Map.of("closed", true));
    }

    @Override
    public void close() throws IOException {
        channel.close();
        try {
            reader.join(1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** A check of the demo that did not hold; ends the demo with exit code 1. */
    static final class DemoFailure extends RuntimeException {
        private static final long serialVersionUID = 1L;

        DemoFailure(String message) {
            super(message);
        }
    }
}
