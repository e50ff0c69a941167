package dev.strata.block.drivers;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.qcow2.Qcow2Create;
import java.io.IOException;
import java.util.Map;
import java.util.Set;

/**
 * QEMU's blockdev-create for the drivers that can create images, from BlockdevCreateOptions already
 * checked against QAPI's schema (a map: {@code driver} and that driver's members):
 *
 * <ul>
 *   <li>{@code file}: {@code filename}, {@code size}; {@code preallocation} off only; {@code nocow}
 *       and {@code extent-size-hint} are accepted and have no effect (no btrfs, no extent hints).
 *   <li>{@code qcow2}: formats an existing node ({@code file}: a node name, or options of a new
 *       node opened for the creation only) as qemu-storage-daemon does, without opening the
 *       backing file; versions 2 and 3, every refcount width, zlib or zstd; no extended L2, no
 *       external data file and no encryption, each refused with a clear error when asked for.
 * </ul>
 *
 * The host file is created with the image lock ({@link BlockGraph#createFile}), and a node to
 * format is written only through the block layer, so an image in use is never touched.
 */
public final class ImageCreator {
    private static final Set<String> DRIVERS = Set.of("file", "qcow2");

    private ImageCreator() {}

    /** Whether {@code driver} can create images (else QEMU's "Driver does not support blockdev-create"). */
    public static boolean supports(String driver) {
        return DRIVERS.contains(driver);
    }

    /** Creates the image {@code options} describe. */
    public static void create(BlockGraph graph, Map<String, Object> options) throws IOException {
        switch ((String) options.get("driver")) {
            case "file" -> createFile(graph, options);
            case "qcow2" -> createQcow2(graph, options);
            default -> throw new BlockException("Driver does not support blockdev-create", BlockException.ENOTSUP);
        }
    }

    private static void createFile(BlockGraph graph, Map<String, Object> o) throws IOException {
        String prealloc = (String) o.getOrDefault("preallocation", "off");
        if (!prealloc.equals("off")) {
            throw new BlockException(
                    "Unsupported preallocation mode '" + prealloc + "' (Strata supports off)", BlockException.ENOTSUP);
        }
        graph.createFile((String) o.get("filename"), number(o, "size", 0));
    }

    private static void createQcow2(BlockGraph graph, Map<String, Object> o) throws IOException {
        refuse(o, "data-file", "external data files");
        refuse(o, "data-file-raw", "external data files");
        refuse(o, "encrypt", "encryption");
        if (Boolean.TRUE.equals(o.get("extended-l2"))) {
            throw unsupported("extended L2 entries");
        }
        String version = (String) o.getOrDefault("version", "v3");
        long clusterSize = number(o, "cluster-size", Qcow2Create.Options.DEFAULT_CLUSTER_SIZE);
        if (clusterSize > Integer.MAX_VALUE || clusterSize < 0) {
            throw new BlockException(
                    "Cluster size must be a power of two between 512 and 2048k", BlockException.EINVAL);
        }
        long size = number(o, "size", 0);
        Qcow2Create.Options options = new Qcow2Create.Options(
                size,
                (int) clusterSize,
                (String) o.get("backing-file"),
                (String) o.get("backing-fmt"),
                Qcow2Create.Preallocation.parse((String) o.getOrDefault("preallocation", "off")),
                Boolean.TRUE.equals(o.get("lazy-refcounts")),
                version,
                (int) Math.min(Integer.MAX_VALUE, number(o, "refcount-bits", 16)),
                (String) o.getOrDefault("compression-type", "zlib"));
        Qcow2Create.checkOptions(options);
        Object ref = o.get("file");
        BlockOptions qcow2 = BlockOptions.empty().put("driver", "qcow2").put("backing", null);
        switch (ref) {
            case String name -> {
                BlockNode node = graph.find(name)
                        .orElseThrow(() -> new BlockException(
                                "Cannot find device='" + name + "' nor node-name='" + name + "'",
                                BlockException.ENOENT));
                checkUnused(graph, node);
                if (node.readOnly()) {
                    throw new BlockException("Block node is read-only", BlockException.EACCES);
                }
                Qcow2Create.format(node.driver(), options, size);
                qcow2.put("file", name);
            }
            case Map<?, ?> nested -> {
                BlockOptions file = fileOptions(nested);
                try (BlockNode node = graph.openDetached(file)) {
                    Qcow2Create.format(node.driver(), options, size);
                }
                qcow2.put("file", fileOptions(nested));
            }
            default -> throw new BlockException("Invalid parameter 'file'", BlockException.EINVAL);
        }
        if (options.preallocation() == Qcow2Create.Preallocation.METADATA && size > 0) {
            Qcow2Create.preallocate(graph, qcow2);
        }
    }

    /**
     * A node another node has as a child (a format on it) takes write and resize from everyone
     * else: formatting it under that parent is QEMU's permission conflict, in QEMU's words.
     */
    private static void checkUnused(BlockGraph graph, BlockNode node) throws BlockException {
        var edge = graph.parentOf(node);
        if (edge.isPresent()) {
            String name = node.nodeName();
            throw new BlockException(
                    "Permission conflict on node '" + name + "': permissions 'write, resize' are both required"
                            + " by an unnamed block device (uses node '" + name + "' as 'root' child) and"
                            + " unshared by node '" + edge.get().parent().nodeName() + "' (uses node '" + name
                            + "' as '" + edge.get().role() + "' child).",
                    BlockException.EPERM);
        }
    }

    @SuppressWarnings("unchecked")
    private static BlockOptions fileOptions(Map<?, ?> nested) {
        return BlockOptions.fromMap((Map<String, Object>) nested);
    }

    private static long number(Map<String, Object> o, String key, long orElse) {
        return o.get(key) instanceof Number n ? n.longValue() : orElse;
    }

    private static void refuse(Map<String, Object> o, String key, String what) throws BlockException {
        if (o.containsKey(key)) {
            throw unsupported(what);
        }
    }

    private static BlockException unsupported(String what) {
        return new BlockException("Strata does not create qcow2 images with " + what, BlockException.ENOTSUP);
    }
}
