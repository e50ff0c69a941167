package dev.strata.qmp;

import dev.strata.qmp.schema.Decoder;
import dev.strata.qmp.schema.Encoder;
import dev.strata.qmp.schema.Qapi;
import dev.strata.qmp.schema.SchemaException;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The QMP side of a daemon: its command table, the sockets it listens on, the sessions connected
 * to them, and the dispatcher that turns one request into one reply with QEMU's checks and texts.
 *
 * <p>Concurrency: each session reads and dispatches on its own virtual thread, but commands run
 * one at a time under {@code commandLock}, as QEMU runs them in its main loop; a command therefore
 * never sees another half-done. Events go to every negotiated session through its outbox, so a
 * client that does not read can never stall a command.
 *
 * <p>Dispatch order (QEMU's qmp_dispatch): the request must be an object; its members are checked
 * in the order given ({@code execute}/{@code exec-oob} must be strings and not both, {@code
 * arguments} an object, nothing but {@code id} besides); then the command is looked up, OOB
 * checked, the arguments decoded against the declaration, and the handler run.
 */
public final class Qmp implements AutoCloseable {
    /** QAPI's VersionTriple. */
    public record VersionTriple(long major, long minor, long micro) {}

    /** QAPI's VersionInfo: {@code qemu} is the triple clients compare, {@code package} free text. */
    public record VersionInfo(
            VersionTriple qemu, @Qapi.Name("package") String packageName) {}

    /** A reply and what to do once it has been written. */
    record Reply(Map<String, Object> message, Runnable after) {}

    static final String NEGOTIATION_COMMAND = "qmp_capabilities";

    private final Commands commands;
    private final VersionInfo version;
    private final ReentrantLock commandLock = new ReentrantLock();
    private final Set<QmpSession> sessions = ConcurrentHashMap.newKeySet();
    private final List<QmpListener> listeners = new CopyOnWriteArrayList<>();

    public Qmp(Commands commands, VersionInfo version) {
        this.commands = commands;
        this.version = version;
    }

    public VersionInfo version() {
        return version;
    }

    public Commands commands() {
        return commands;
    }

    /** Starts listening on a UNIX socket (mode 0600) and serving each connection as a session. */
    public QmpListener listen(Path socket, boolean pretty) throws IOException {
        QmpListener l = QmpListener.open(this, socket, pretty);
        listeners.add(l);
        return l;
    }

    public List<QmpListener> listeners() {
        return List.copyOf(listeners);
    }

    /** Sends an event to every session that completed negotiation. */
    public void emit(String event, Object data) {
        Instant now = Instant.now();
        Map<String, Object> ts = new LinkedHashMap<>();
        ts.put("seconds", now.getEpochSecond());
        ts.put("microseconds", (long) (now.getNano() / 1000));
        Map<String, Object> msg = new LinkedHashMap<>();
        msg.put("timestamp", ts);
        msg.put("event", event);
        if (data != null) {
            msg.put("data", Encoder.toJson(data));
        }
        for (QmpSession s : sessions) {
            if (s.negotiated()) {
                s.send(msg);
            }
        }
    }

    /** The greeting sent on connect: version and offered capabilities (QEMU offers "oob"). */
    Map<String, Object> greeting() {
        Map<String, Object> inner = new LinkedHashMap<>();
        inner.put("version", Encoder.toJson(version));
        inner.put("capabilities", List.of("oob"));
        return Map.of("QMP", inner);
    }

    void register(QmpSession s) {
        sessions.add(s);
    }

    void unregister(QmpSession s) {
        sessions.remove(s);
    }

    public int sessionCount() {
        return sessions.size();
    }

    /** An error reply for input that never became a request (a JSON syntax error): no id. */
    static Map<String, Object> errorReply(ErrorClass cls, String desc, Object id, boolean hasId) {
        Map<String, Object> error = new LinkedHashMap<>();
        error.put("class", cls.name());
        error.put("desc", desc);
        Map<String, Object> msg = new LinkedHashMap<>();
        if (hasId) {
            msg.put("id", id);
        }
        msg.put("error", error);
        return msg;
    }

    Reply dispatch(QmpSession session, Object request) {
        if (!(request instanceof Map<?, ?> raw)) {
            return new Reply(errorReply(ErrorClass.GenericError, "QMP input must be a JSON object", null, false), null);
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> req = (Map<String, Object>) raw;
        boolean hasId = req.containsKey("id");
        Object id = req.get("id");
        List<Runnable> after = new ArrayList<>(1);
        try {
            Object result = execute(session, req, after);
            Map<String, Object> msg = new LinkedHashMap<>();
            msg.put("return", result == null ? Map.of() : Encoder.toJson(result));
            if (hasId) {
                msg.put("id", id);
            }
            return new Reply(msg, after.isEmpty() ? null : after.getFirst());
        } catch (QmpException e) {
            return new Reply(errorReply(e.errorClass(), e.desc(), id, hasId), null);
        }
    }

    private Object execute(QmpSession session, Map<String, Object> req, List<Runnable> after) throws QmpException {
        String execKey = null;
        String name = null;
        for (var e : req.entrySet()) {
            String key = e.getKey();
            if (key.equals("execute") || (key.equals("exec-oob") && session.oobEnabled())) {
                if (!(e.getValue() instanceof String s)) {
                    throw new QmpException("QMP input member '" + key + "' must be a string");
                }
                if (execKey != null) {
                    throw new QmpException("QMP input member '" + key + "' clashes with '" + execKey + "'");
                }
                execKey = key;
                name = s;
            } else if (key.equals("arguments")) {
                if (!(e.getValue() instanceof Map<?, ?>)) {
                    throw new QmpException("QMP input member 'arguments' must be an object");
                }
            } else if (!key.equals("id")) {
                throw new QmpException("QMP input member '" + key + "' is unexpected");
            }
        }
        if (name == null) {
            throw new QmpException("QMP input lacks member 'execute'");
        }
        Command cmd = commands.find(name);
        boolean negotiating = !session.negotiated();
        if (cmd == null || (negotiating && !name.equals(NEGOTIATION_COMMAND))) {
            throw new QmpException(
                    ErrorClass.CommandNotFound,
                    negotiating
                            ? "Expecting capabilities negotiation with 'qmp_capabilities'"
                            : "The command " + name + " has not been found");
        }
        if (execKey.equals("exec-oob") && !cmd.allowOob()) {
            throw new QmpException("The command " + name + " does not support OOB");
        }
        @SuppressWarnings("unchecked")
        Map<String, Object> arguments = (Map<String, Object>) req.getOrDefault("arguments", Map.of());
        Object decoded;
        try {
            decoded = Decoder.decodeArguments(cmd.arguments(), arguments, Decoder.Mode.JSON);
        } catch (SchemaException e) {
            throw new QmpException(e.getMessage());
        }
        Command.Context context = new Command.Context() {
            @Override
            public QmpSession session() {
                return session;
            }

            @Override
            public void afterReply(Runnable action) {
                after.add(action);
            }
        };
        commandLock.lock();
        try {
            return cmd.handler().run(decoded, context);
        } finally {
            commandLock.unlock();
        }
    }

    /**
     * Runs {@code action} as if it were a command: under the command lock, so it never overlaps
     * one (start-up options and shutdown use this).
     */
    public <T> T underCommandLock(java.util.concurrent.Callable<T> action) throws Exception {
        commandLock.lock();
        try {
            return action.call();
        } finally {
            commandLock.unlock();
        }
    }

    /** Stops listening and closes every session. */
    @Override
    public void close() {
        for (QmpListener l : listeners) {
            l.close();
        }
        listeners.clear();
        for (QmpSession s : sessions) {
            s.closeAfterPending(2_000);
        }
    }
}
