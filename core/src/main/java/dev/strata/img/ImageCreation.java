package dev.strata.img;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.qcow2.Qcow2Create;
import dev.strata.block.raw.RawDriver;
import java.io.IOException;

/**
 * Makes new image files for {@code strata img create}: raw and qcow2 through their drivers' create
 * entry points, which create the host file through the block layer (refusing a file in use).
 * Options were checked by {@link CreateOptions}; sizes are final here.
 */
final class ImageCreation {
    private ImageCreation() {}

    /**
     * Creates (or empties and resizes) {@code filename} as an image of {@code size} bytes. With
     * {@code openBacking} false a backing file is only named, never opened (qemu-img create -u).
     */
    static void create(
            BlockGraph graph, String format, String filename, long size, CreateOptions options, boolean openBacking)
            throws IOException {
        switch (format) {
            case "raw" -> createRaw(graph, filename, size, options);
            case "qcow2" -> createQcow2(graph, filename, size, options, openBacking);
            default -> throw new BlockException("Format driver '" + format + "' does not support image creation");
        }
    }

    private static void createRaw(BlockGraph graph, String filename, long size, CreateOptions options)
            throws IOException {
        String prealloc = options.get("preallocation").orElse("off");
        if (!prealloc.equals("off")) {
            throw new BlockException(
                    "Unsupported preallocation mode '" + prealloc + "' for raw (Strata supports off)",
                    BlockException.ENOTSUP);
        }
        RawDriver.create(graph, filename, size);
    }

    private static void createQcow2(
            BlockGraph graph, String filename, long size, CreateOptions options, boolean openBacking)
            throws IOException {
        long clusterSize = Long.parseLong(options.getOrDefault("cluster_size"));
        if (clusterSize > Integer.MAX_VALUE) {
            throw new BlockException(
                    "Cluster size must be a power of two between 512 and 2048k", BlockException.EINVAL);
        }
        refuseUnlessDefault(options, "extended_l2", "off", "extended L2 entries");
        Qcow2Create.Options o = new Qcow2Create.Options(
                size,
                (int) clusterSize,
                options.get("backing_file").orElse(null),
                options.get("backing_fmt").orElse(null),
                Qcow2Create.Preallocation.parse(options.get("preallocation").orElse("off")),
                options.bool("lazy_refcounts"),
                options.get("compat").orElse("1.1"),
                refcountBits(options),
                options.getOrDefault("compression_type"));
        // -u: the backing file is named in the header and never opened
        Qcow2Create.create(graph, filename, o, openBacking);
    }

    private static int refcountBits(CreateOptions options) throws BlockException {
        try {
            return Integer.parseInt(options.getOrDefault("refcount_bits"));
        } catch (NumberFormatException e) {
            throw new BlockException(
                    "Refcount width must be a power of two and may not exceed 64 bits", BlockException.EINVAL);
        }
    }

    private static void refuseUnlessDefault(CreateOptions options, String key, String only, String what)
            throws BlockException {
        String v = options.getOrDefault(key);
        boolean isDefault = v.equals(only) || (only.equals("off") && (v.equals("no") || v.equals("false")));
        if (!isDefault) {
            throw new BlockException(
                    "Strata does not create qcow2 images with " + what + " (" + key + "=" + v + ")",
                    BlockException.ENOTSUP);
        }
    }

    static long roundUp512(long size) {
        return (size + 511) & ~511L;
    }
}
