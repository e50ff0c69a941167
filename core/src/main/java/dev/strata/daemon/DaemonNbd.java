package dev.strata.daemon;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockOptions;
import dev.strata.nbd.NbdException;
import dev.strata.nbd.NbdServer;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.commands.NbdCommands;
import dev.strata.qmp.schema.Decoder;
import dev.strata.qmp.schema.Schema;
import dev.strata.qmp.schema.SchemaException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * qemu-storage-daemon's {@code --nbd-server} and {@code --export} options: the same schema as
 * nbd-server-start (with the flat SocketAddress) and block-export-add, read from key=value text.
 * {@code bitmap=B} is accepted as Strata's shorthand for {@code bitmaps.0=B}.
 */
final class DaemonNbd {
    private DaemonNbd() {}

    @SuppressWarnings("unchecked")
    static void startServer(NbdServer nbd, String text) throws Daemon.StartupException {
        Map<String, Object> options = decode("--nbd-server", text, null, NbdCommands.serverOptions());
        Map<String, Object> addr = (Map<String, Object>) options.get("addr");
        NbdServer.Address address = switch (String.valueOf(addr.get("type"))) {
            case "unix" -> new NbdServer.Unix(Path.of((String) addr.get("path")));
            case "inet" ->
                new NbdServer.Inet(NbdCommands.hostOrLoopback((String) addr.get("host")), (String) addr.get("port"));
            default ->
                throw new Daemon.StartupException(
                        "--nbd-server " + text + ": Strata serves NBD on inet and unix sockets only");
        };
        if (options.get("tls-creds") instanceof String creds) {
            throw new Daemon.StartupException("--nbd-server " + text + ": No TLS credentials with id '" + creds + "'");
        }
        long max = options.get("max-connections") instanceof Number n ? n.longValue() : 100;
        try {
            nbd.start(address, max);
        } catch (NbdException e) {
            throw new Daemon.StartupException("--nbd-server " + text + ": " + e.getMessage());
        }
    }

    static void addExport(BlockGraph graph, NbdServer nbd, String text) throws Daemon.StartupException {
        Object decoded = decode("--export", text, "type", Schema.struct(NbdCommands.BlockExportOptions.class));
        try {
            NbdCommands.addExport(graph, nbd, (NbdCommands.BlockExportOptions) decoded);
        } catch (QmpException e) {
            throw new Daemon.StartupException("--export " + text + ": " + e.desc());
        }
    }

    @SuppressWarnings("unchecked")
    private static <T> T decode(String option, String text, String impliedKey, dev.strata.qmp.schema.QType type)
            throws Daemon.StartupException {
        try {
            Map<String, Object> map = toMap(BlockOptions.parseKeyValue(text, impliedKey));
            if (map.remove("bitmap") instanceof String b && option.equals("--export")) {
                List<Object> list = map.get("bitmaps") instanceof List<?> l ? new ArrayList<>(l) : new ArrayList<>();
                list.add(b);
                map.put("bitmaps", list);
            }
            return (T) Decoder.decodeArguments(type, map, Decoder.Mode.KEYVAL);
        } catch (IllegalArgumentException | SchemaException e) {
            throw new Daemon.StartupException(option + " " + text + ": " + e.getMessage());
        }
    }

    /** The key=value tree as JSON-shaped values; a level whose keys are 0, 1, ... is a list. */
    private static Map<String, Object> toMap(BlockOptions options) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (var e : options.asMap().entrySet()) {
            out.put(e.getKey(), e.getValue() instanceof BlockOptions nested ? value(nested) : e.getValue());
        }
        return out;
    }

    private static Object value(BlockOptions nested) {
        Map<String, Object> m = toMap(nested);
        TreeMap<Integer, Object> indexed = new TreeMap<>();
        for (var e : m.entrySet()) {
            if (!e.getKey().matches("\\d{1,6}")) {
                return m;
            }
            indexed.put(Integer.parseInt(e.getKey()), e.getValue());
        }
        if (indexed.isEmpty() || indexed.lastKey() != indexed.size() - 1) {
            return m;
        }
        return new ArrayList<>(indexed.values());
    }
}
