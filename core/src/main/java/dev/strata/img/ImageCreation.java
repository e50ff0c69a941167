package dev.strata.img;

import dev.strata.block.BlockException;
import dev.strata.block.qcow2.Qcow2Create;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;

/**
 * Makes new image files: raw through the host file system, qcow2 through the qcow2 driver's
 * create entry point. Options were checked by {@link CreateOptions}; sizes are final here.
 */
final class ImageCreation {
    /** qemu-img allocates this much at the start of a new raw file so alignment probing works. */
    private static final int RAW_FIRST_BLOCK = 4096;

    private ImageCreation() {}

    /**
     * Creates (or empties and resizes) {@code filename} as an image of {@code size} bytes. With
     * {@code openBacking} false a backing file is only named, never opened (qemu-img create -u).
     */
    static void create(String format, String filename, long size, CreateOptions options, boolean openBacking)
            throws IOException {
        switch (format) {
            case "raw" -> createRaw(filename, size, options);
            case "qcow2" -> createQcow2(filename, size, options, openBacking);
            default -> throw new BlockException("Format driver '" + format + "' does not support image creation");
        }
    }

    private static void createRaw(String filename, long size, CreateOptions options) throws IOException {
        String prealloc = options.get("preallocation").orElse("off");
        if (!prealloc.equals("off")) {
            throw new BlockException(
                    "Unsupported preallocation mode '" + prealloc + "' for raw (Strata supports off)",
                    BlockException.ENOTSUP);
        }
        // QEMU sizes a raw file in whole 512-byte sectors
        long fileSize = roundUp512(size);
        try (RandomAccessFile file = new RandomAccessFile(filename, "rw")) {
            // empty first (as QEMU does), then grow sparsely with ftruncate
            file.setLength(0);
            file.setLength(fileSize);
            int first = (int) Math.min(RAW_FIRST_BLOCK, fileSize);
            if (first > 0) {
                file.getChannel().write(ByteBuffer.allocate(first), 0);
            }
        } catch (FileNotFoundException e) {
            throw new BlockException("Could not create '" + filename + "': " + reason(e));
        }
    }

    /** The reason part of a FileNotFoundException's message ("x (No such file or directory)"). */
    private static String reason(FileNotFoundException e) {
        String m = String.valueOf(e.getMessage());
        int open = m.lastIndexOf(" (");
        return open >= 0 && m.endsWith(")") ? m.substring(open + 2, m.length() - 1) : m;
    }

    private static void createQcow2(String filename, long size, CreateOptions options, boolean openBacking)
            throws IOException {
        long clusterSize = Long.parseLong(options.getOrDefault("cluster_size"));
        if (clusterSize > Integer.MAX_VALUE) {
            throw new BlockException(
                    "Cluster size must be a power of two between 512 and 2048k", BlockException.EINVAL);
        }
        refuseUnlessDefault(options, "extended_l2", "off", "extended L2 entries");
        refuseUnlessDefault(options, "compression_type", "zlib", "compression types other than zlib");
        refuseUnlessDefault(options, "refcount_bits", "16", "refcount widths other than 16 bits");
        String backing = options.get("backing_file").orElse(null);
        String backingFormat = options.get("backing_fmt").orElse(null);
        // Qcow2Create opens the backing file to check it; an unsafe create names it afterwards instead
        boolean nameLater = backing != null && !openBacking;
        Qcow2Create.Options o = new Qcow2Create.Options(
                size,
                (int) clusterSize,
                nameLater ? null : backing,
                nameLater ? null : backingFormat,
                Qcow2Create.Preallocation.parse(options.get("preallocation").orElse("off")),
                options.bool("lazy_refcounts"),
                options.get("compat").orElse("1.1"));
        Qcow2Create.create(Path.of(filename), o);
        if (nameLater) {
            BackingFileChange.apply(filename, backing, backingFormat);
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
