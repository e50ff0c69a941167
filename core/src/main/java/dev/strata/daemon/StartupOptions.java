package dev.strata.daemon;

import dev.strata.block.BlockOptions;
import dev.strata.daemon.Daemon.StartupException;
import dev.strata.json.Json;
import dev.strata.qmp.commands.BlockdevSchema;
import dev.strata.qmp.schema.Decoder;
import dev.strata.qmp.schema.SchemaException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The texts of the daemon's start-up options read as qemu-storage-daemon reads them, each refusal
 * worded "--option TEXT: reason": {@code --chardev}, {@code --monitor} and {@code --qmp} into the
 * sockets QMP listens on, {@code --blockdev} (key=value or JSON) into the checked options that
 * blockdev-add takes. {@link Daemon} applies them in order.
 */
final class StartupOptions {
    private StartupOptions() {}

    /** A UNIX socket to serve QMP on; {@code waitForClient}: start-up waits for a first client. */
    record SocketSpec(Path path, boolean waitForClient) {}

    /** A {@code --monitor}: the chardev it serves QMP on, and whether its output is pretty. */
    record MonitorSpec(String chardev, boolean pretty) {}

    static MonitorSpec monitor(String text) throws StartupException {
        BlockOptions m = parse("--monitor", text, "chardev");
        String id = m.string("chardev").orElse(null);
        if (id == null) {
            throw new StartupException("--monitor " + text + ": Parameter 'chardev' is missing");
        }
        String mode = m.string("mode").orElse("control");
        boolean pretty = bool("--monitor", text, m, "pretty", false);
        m.get("id");
        unknownKeys("--monitor", text, m);
        if (!mode.equals("control")) {
            throw new StartupException("--monitor " + text + ": Only QMP is supported");
        }
        return new MonitorSpec(id, pretty);
    }

    private static BlockOptions parse(String option, String text, String impliedKey) throws StartupException {
        try {
            return BlockOptions.parseKeyValue(text, impliedKey);
        } catch (IllegalArgumentException e) {
            throw new StartupException(option + " " + text + ": " + e.getMessage());
        }
    }

    private static boolean bool(String option, String text, BlockOptions o, String key, boolean def)
            throws StartupException {
        try {
            return o.bool(key, def);
        } catch (IllegalArgumentException e) {
            throw new StartupException(option + " " + text + ": " + e.getMessage());
        }
    }

    private static void unknownKeys(String option, String text, BlockOptions o) throws StartupException {
        if (!o.unusedKeys().isEmpty()) {
            throw new StartupException(option + " " + text + ": Invalid parameter '"
                    + o.unusedKeys().getFirst() + "'");
        }
    }

    static Map.Entry<String, SocketSpec> chardev(String text) throws StartupException {
        BlockOptions c = parse("--chardev", text, "backend");
        String backend = c.string("backend").orElse("");
        String id = c.string("id").orElse(null);
        if (!backend.equals("socket")) {
            throw new StartupException("--chardev " + text + ": chardev backend '" + backend
                    + "' is not supported by Strata (only socket,path=...,server=on)");
        }
        if (id == null) {
            throw new StartupException("--chardev " + text + ": chardev: no id specified");
        }
        String path = c.string("path").orElse(null);
        boolean server = bool("--chardev", text, c, "server", false);
        boolean wait = bool("--chardev", text, c, "wait", true);
        unknownKeys("--chardev", text, c);
        if (path == null) {
            throw new StartupException("--chardev " + text + ": Strata serves QMP on UNIX sockets: path= is needed");
        }
        if (!server) {
            throw new StartupException("--chardev " + text + ": Strata's QMP sockets are servers: use server=on");
        }
        return Map.entry(id, new SocketSpec(Path.of(path), wait));
    }

    static SocketSpec qmpSocket(String text) throws StartupException {
        if (!text.startsWith("unix:")) {
            throw new StartupException("--qmp " + text + ": Strata serves QMP on UNIX sockets: use unix:PATH");
        }
        BlockOptions q = parse("--qmp", text.substring("unix:".length()), "path");
        String path = q.string("path").orElse("");
        boolean server = bool("--qmp", text, q, "server", false);
        boolean wait = bool("--qmp", text, q, "wait", true);
        unknownKeys("--qmp", text, q);
        if (path.isEmpty()) {
            throw new StartupException("--qmp " + text + ": a socket path is needed");
        }
        if (!server) {
            throw new StartupException("--qmp " + text + ": Strata's QMP sockets are servers: use server=on");
        }
        return new SocketSpec(Path.of(path), wait);
    }

    /** {@code --blockdev} in either form, checked against BlockdevOptions as blockdev-add is. */
    static Map<String, Object> blockdev(String text, BlockdevSchema schema) throws StartupException {
        Map<String, Object> json;
        Decoder.Mode mode;
        try {
            if (text.startsWith("{")) {
                if (!(Json.parse(text) instanceof Map<?, ?> m)) {
                    throw new IllegalArgumentException("expected a JSON object");
                }
                json = castMap(m);
                mode = Decoder.Mode.JSON;
            } else {
                json = toMap(BlockOptions.parseKeyValue(text, "driver"));
                mode = Decoder.Mode.KEYVAL;
            }
        } catch (IllegalArgumentException e) {
            throw new StartupException("--blockdev " + text + ": " + e.getMessage());
        }
        try {
            return castMap(Decoder.decodeArguments(schema.union(), json, mode));
        } catch (SchemaException e) {
            throw new StartupException("--blockdev " + text + ": " + e.getMessage());
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> castMap(Object m) {
        return (Map<String, Object>) m;
    }

    /** The key=value tree as the JSON-shaped maps the decoder reads (values stay strings). */
    private static Map<String, Object> toMap(BlockOptions options) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (var e : options.asMap().entrySet()) {
            out.put(e.getKey(), e.getValue() instanceof BlockOptions nested ? toMap(nested) : e.getValue());
        }
        return out;
    }
}
