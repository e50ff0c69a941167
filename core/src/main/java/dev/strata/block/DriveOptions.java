package dev.strata.block;

import java.util.Map;
import java.util.Set;

/**
 * QEMU's {@code -drive} option list turned into the drive's id and the options of its root node,
 * as QEMU's drive_new and blockdev_init do it: {@code file=PATH} becomes a "file" child,
 * {@code format} the driver (probed when absent), {@code cache}, {@code readonly} and
 * {@code discard} the node's flags. Keys that only matter to a guest's device model ({@code if},
 * {@code bus}, {@code unit}, {@code index}, {@code media}, {@code werror}, {@code rerror},
 * {@code serial}) are accepted and ignored; every other key goes to the format driver, which
 * refuses what it does not know with QEMU's message.
 */
public final class DriveOptions {
    /** The parsed form: the drive's id and its root node's options. */
    public record Parsed(String id, BlockOptions root) {}

    private static final Set<String> DEVICE_MODEL_KEYS =
            Set.of("bus", "unit", "index", "media", "werror", "rerror", "serial", "addr", "boot", "trans");

    /** QEMU's interface names (if=); all are accepted, none gives Strata a guest device. */
    private static final Set<String> INTERFACES =
            Set.of("none", "ide", "scsi", "floppy", "pflash", "mtd", "sd", "virtio", "xen");

    private static final Map<String, String> DEFAULT_ID_PREFIX = Map.of(
            "none", "none", "virtio", "virtio", "floppy", "floppy", "pflash", "pflash", "mtd", "mtd", "sd", "sd");

    private DriveOptions() {}

    /**
     * Parses {@code text} ("id=drive0,file=disk.qcow2,format=qcow2,node-name=node0,if=none").
     * A drive without an id is named after its interface and the first free index ("none0").
     *
     * @throws BlockException with QEMU's message for a bad value
     */
    public static Parsed parse(String text, BlockGraph graph) throws java.io.IOException {
        BlockOptions o;
        try {
            o = BlockOptions.parseKeyValue(text, "file");
        } catch (IllegalArgumentException e) {
            throw new BlockException(e.getMessage(), BlockException.EINVAL);
        }
        String iface = str(o, "if").orElse("ide");
        if (!INTERFACES.contains(iface)) {
            throw new BlockException("unsupported bus type '" + iface + "'", BlockException.EINVAL);
        }
        String id = str(o, "id").orElse(null);
        if (id == null) {
            String prefix = DEFAULT_ID_PREFIX.get(iface);
            for (int index = 0; id == null || graph.drive(id).isPresent(); index++) {
                id = prefix != null ? prefix + index : iface + index + "-hd0";
            }
        } else {
            checkId(id);
        }
        for (String k : DEVICE_MODEL_KEYS) {
            o.get(k);
        }
        BlockOptions root = BlockOptions.empty();
        String cache = str(o, "cache").orElse(null);
        // cache=none and directsync bypass the host's page cache; unsafe ignores flushes
        boolean direct = "none".equals(cache) || "directsync".equals(cache);
        if (cache != null) {
            if (!Set.of("none", "writeback", "writethrough", "directsync", "unsafe")
                    .contains(cache)) {
                throw new BlockException("invalid cache option", BlockException.EINVAL);
            }
            root.put(
                    "cache",
                    BlockOptions.empty()
                            .put("direct", direct ? "on" : "off")
                            .put("no-flush", cache.equals("unsafe") ? "on" : "off"));
        }
        String aio = str(o, "aio").orElse(null);
        if (aio != null) {
            if (!Set.of("threads", "native", "io_uring").contains(aio)) {
                throw new BlockException("invalid aio option", BlockException.EINVAL);
            }
            if (aio.equals("native") && !direct) {
                throw new BlockException(
                        "aio=native was specified, but it requires cache.direct=on, which was not specified.",
                        BlockException.EINVAL);
            }
        }
        String ro = str(o, "readonly").orElse(null);
        if (ro != null) {
            if (!ro.equals("on") && !ro.equals("off")) {
                throw new BlockException("Parameter 'read-only' expects 'on' or 'off'", BlockException.EINVAL);
            }
            root.put("read-only", ro);
        }
        if (str(o, "snapshot").filter(s -> !s.equals("off")).isPresent()) {
            throw new BlockException("snapshot=on is not supported by Strata", BlockException.ENOTSUP);
        }
        if (str(o, "copy-on-read").filter(s -> !s.equals("off")).isPresent()) {
            throw new BlockException("copy-on-read=on is not supported by Strata", BlockException.ENOTSUP);
        }
        Object file = o.get("file");
        String format = str(o, "format").or(() -> str(o, "driver")).orElse(null);
        switch (file) {
            case String path
            when Filenames.isJson(path) -> {
                // the json: filename is the drive's node: its driver (or format=) and its children
                BlockOptions node = graph.imageOptions(path, format);
                node.asMap().forEach(root::put);
                format = node.requireString("driver");
            }
            case String path -> {
                root.put("file", Filenames.protocol(path));
                if (format == null) {
                    try {
                        format = graph.probe(path);
                    } catch (java.nio.file.InvalidPathException e) {
                        throw new BlockException(
                                "Could not open '" + path + "': Invalid argument", BlockException.EINVAL);
                    }
                }
            }
            case BlockOptions nested -> root.put("file", nested);
            case null ->
                throw new BlockException("A drive needs file=PATH: Strata has no empty drives", BlockException.EINVAL);
            default -> throw new BlockException("Invalid parameter 'file'", BlockException.EINVAL);
        }
        if (format == null) {
            throw new BlockException("Parameter 'format' is missing", BlockException.EINVAL);
        }
        root.put("driver", format);
        for (String k : o.unusedKeys()) {
            root.put(k, o.get(k));
        }
        return new Parsed(id, root);
    }

    private static java.util.Optional<String> str(BlockOptions o, String key) {
        Object v = o.get(key);
        return v instanceof String s ? java.util.Optional.of(s) : java.util.Optional.empty();
    }

    /** QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
    static void checkId(String id) throws BlockException {
        boolean ok = !id.isEmpty() && Character.isLetter(id.charAt(0)) && id.charAt(0) < 128;
        for (int i = 1; ok && i < id.length(); i++) {
            char c = id.charAt(i);
            ok = c < 128 && (Character.isLetterOrDigit(c) || c == '-' || c == '.' || c == '_');
        }
        if (!ok) {
            throw new BlockException(
                    "Parameter 'id' expects an identifier\n"
                            + "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.",
                    BlockException.EINVAL);
        }
    }
}
