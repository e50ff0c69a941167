package dev.strata.qmp;

import dev.strata.json.Json;
import dev.strata.json.JsonWriter;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A minimal QMP client for tests: raw bytes out, one parsed message per CRLF-terminated line in,
 * with events kept aside so that a command's reply is what {@link #execute} returns.
 */
public final class QmpClient implements AutoCloseable {
    private final SocketChannel channel;
    private final ExecutorService reader =
            Executors.newSingleThreadExecutor(Thread.ofVirtual().factory());
    private final ByteArrayOutputStream pending = new ByteArrayOutputStream();
    private final ArrayDeque<Map<String, Object>> events = new ArrayDeque<>();
    private final Map<String, Object> greeting;

    private QmpClient(SocketChannel channel) throws IOException {
        this.channel = channel;
        this.greeting = readMessage();
    }

    public static QmpClient connect(Path socket) throws IOException {
        SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(socket));
        return new QmpClient(ch);
    }

    public Map<String, Object> greeting() {
        return greeting;
    }

    public QmpClient negotiate() throws IOException {
        Map<String, Object> r = execute("qmp_capabilities");
        if (!Map.of().equals(r.get("return"))) {
            throw new AssertionError("qmp_capabilities failed: " + r);
        }
        return this;
    }

    public void sendRaw(byte[] bytes) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(bytes);
        while (b.hasRemaining()) {
            channel.write(b);
        }
    }

    public void sendRaw(String text) throws IOException {
        sendRaw(text.getBytes(StandardCharsets.UTF_8));
    }

    /** Sends a request and returns its reply (events that arrive first are kept for {@link #events}). */
    public Map<String, Object> execute(String command, Map<String, Object> arguments) throws IOException {
        Map<String, Object> req = new LinkedHashMap<>();
        req.put("execute", command);
        if (arguments != null) {
            req.put("arguments", arguments);
        }
        sendRaw(JsonWriter.write(req) + "\n");
        return readReply();
    }

    public Map<String, Object> execute(String command) throws IOException {
        return execute(command, null);
    }

    /** Executes and expects success; returns the "return" value. */
    public Object ok(String command, Map<String, Object> arguments) throws IOException {
        Map<String, Object> r = execute(command, arguments);
        if (!r.containsKey("return")) {
            throw new AssertionError(command + " failed: " + r);
        }
        return r.get("return");
    }

    /** Executes and expects an error; returns "class: desc". */
    public String error(String command, Map<String, Object> arguments) throws IOException {
        Map<String, Object> r = execute(command, arguments);
        return errorOf(r);
    }

    @SuppressWarnings("unchecked")
    public static String errorOf(Map<String, Object> reply) {
        if (!(reply.get("error") instanceof Map<?, ?> e)) {
            throw new AssertionError("expected an error, got " + reply);
        }
        Map<String, Object> err = (Map<String, Object>) e;
        return err.get("class") + ": " + err.get("desc");
    }

    /** The next message that is not an event. */
    public Map<String, Object> readReply() throws IOException {
        while (true) {
            Map<String, Object> m = readMessage();
            if (m.containsKey("event")) {
                events.add(m);
            } else {
                return m;
            }
        }
    }

    /** Events received so far (and removes them), reading more for up to {@code waitMillis}. */
    public List<Map<String, Object>> events(int count, long waitMillis) throws IOException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(waitMillis);
        while (events.size() < count && System.nanoTime() < deadline) {
            try {
                Map<String, Object> m = readMessage(Math.max(1, (deadline - System.nanoTime()) / 1_000_000));
                if (m.containsKey("event")) {
                    events.add(m);
                } else {
                    throw new AssertionError("unexpected reply while waiting for events: " + m);
                }
            } catch (TimeoutException e) {
                break;
            }
        }
        List<Map<String, Object>> out = List.copyOf(events);
        events.clear();
        return out;
    }

    public Map<String, Object> readMessage() throws IOException {
        try {
            return readMessage(30_000);
        } catch (TimeoutException e) {
            throw new AssertionError("no message from the server within 30 s");
        }
    }

    /** Reads the next message within the timeout; end of input gives an AssertionError. */
    @SuppressWarnings("unchecked")
    public Map<String, Object> readMessage(long timeoutMillis) throws IOException, TimeoutException {
        String line = readLine(timeoutMillis);
        return (Map<String, Object>) Json.parse(line);
    }

    /** Whether the server closed the connection (end of input within the timeout). */
    public boolean closedByServer(long timeoutMillis) throws IOException {
        try {
            readLine(timeoutMillis);
            return false;
        } catch (EndOfInput e) {
            return true;
        } catch (TimeoutException e) {
            return false;
        }
    }

    /** End of input from the server. */
    public static final class EndOfInput extends AssertionError {
        private static final long serialVersionUID = 1L;

        EndOfInput() {
            super("the server closed the connection");
        }
    }

    private String readLine(long timeoutMillis) throws IOException, TimeoutException {
        while (true) {
            byte[] buf = pending.toByteArray();
            for (int i = 0; i + 1 < buf.length; i++) {
                if (buf[i] == '\r' && buf[i + 1] == '\n') {
                    pending.reset();
                    pending.write(buf, i + 2, buf.length - i - 2);
                    return new String(buf, 0, i, StandardCharsets.US_ASCII);
                }
            }
            Future<byte[]> f = pendingRead != null
                    ? pendingRead
                    : reader.submit(() -> {
                        ByteBuffer b = ByteBuffer.allocate(65536);
                        int n = channel.read(b);
                        return n < 0 ? null : java.util.Arrays.copyOf(b.array(), n);
                    });
            pendingRead = null;
            byte[] chunk;
            try {
                chunk = f.get(timeoutMillis, TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException(e);
            } catch (java.util.concurrent.ExecutionException e) {
                throw new IOException(e.getCause());
            } catch (TimeoutException e) {
                // the read stays pending; its bytes arrive with the next call
                pendingRead = f;
                throw e;
            }
            if (chunk == null) {
                throw new EndOfInput();
            }
            pending.write(chunk, 0, chunk.length);
        }
    }

    private Future<byte[]> pendingRead;

    @Override
    public void close() throws IOException {
        channel.close();
        reader.shutdownNow();
    }
}
