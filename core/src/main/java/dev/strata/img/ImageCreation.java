package dev.strata.img;

import dev.strata.block.BlockException;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;

/**
 * Makes new image files: raw through the host file system, qcow2 through the qcow2 driver's
 * create entry point. Options were checked by {@link CreateOptions}; sizes are final here.
 */
final class ImageCreation {
    /** qemu-img allocates this much at the start of a new raw file so alignment probing works. */
    private static final int RAW_FIRST_BLOCK = 4096;

    private ImageCreation() {}

    /** Creates (or empties and resizes) {@code filename} as an image of {@code size} bytes. */
    static void create(String format, String filename, long size, CreateOptions options) throws IOException {
        switch (format) {
            case "raw" -> createRaw(filename, size, options);
            case "qcow2" -> createQcow2(filename, size, options);
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

    private static void createQcow2(String filename, long size, CreateOptions options) throws IOException {
        throw new BlockException("qcow2 creation is not available yet", BlockException.ENOTSUP);
    }

    static long roundUp512(long size) {
        return (size + 511) & ~511L;
    }
}
