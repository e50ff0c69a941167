package dev.strata.block.raw;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.HostRun;
import dev.strata.block.OpenContext;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The "raw" format: the guest sees its file child's bytes as they are, optionally a window of
 * {@code size} bytes starting at {@code offset} (QEMU's raw options).
 */
public final class RawDriver implements BlockDriver {
    // set at open, never changed (size changes only through truncate, under the node's control)
    private final BlockNode file;
    private final long offset;
    private final boolean hasSize;
    private volatile long size;

    private RawDriver(BlockNode file, long offset, long size, boolean hasSize) {
        this.file = file;
        this.offset = offset;
        this.size = size;
        this.hasSize = hasSize;
    }

    /** qemu-img allocates this much at the start of a new raw file, so that alignment probing works. */
    private static final int FIRST_BLOCK = 4096;

    /**
     * Creates (or empties and resizes) the raw image {@code filename} of {@code size} bytes, rounded
     * up to whole 512-byte sectors, as qemu-img create and drive-backup's target creation do: the
     * host file through {@link BlockGraph#createFile} (which refuses a file in use), then its first
     * 4 KiB written as zeros through a file node.
     */
    public static void create(BlockGraph graph, String filename, long size) throws IOException {
        long fileSize = (size + 511) & ~511L;
        graph.createFile(filename, fileSize);
        int first = (int) Math.min(FIRST_BLOCK, fileSize);
        if (first > 0) {
            try (BlockNode file = graph.openDetached(
                    BlockOptions.empty().put("driver", "file").put("filename", filename))) {
                file.driver().write(0, ByteBuffer.allocate(first));
                file.driver().flush();
            }
        }
    }

    public static RawDriver open(BlockOptions options, OpenContext context) throws IOException {
        BlockNode file = context.openChild(options, "file", context.flags());
        if (file == null) {
            throw new BlockException("A block device must be specified for \"file\"", BlockException.EINVAL);
        }
        long offset = options.number("offset", 0);
        boolean hasSize = options.has("size");
        long fileLength = file.length();
        long size = options.number("size", Math.max(0, fileLength - offset));
        if (offset < 0 || (hasSize && offset + size > fileLength)) {
            throw new BlockException(
                    "The sum of offset (" + offset + ") and size (" + size
                            + ") has to be smaller or equal to the actual size of the containing file (" + fileLength
                            + ")",
                    BlockException.EINVAL);
        }
        if (offset > fileLength) {
            throw new BlockException("offset cannot be larger than the file size", BlockException.EINVAL);
        }
        return new RawDriver(file, offset, size, hasSize);
    }

    @Override
    public String format() {
        return "raw";
    }

    @Override
    public long length() throws IOException {
        return hasSize ? size : Math.max(0, file.length() - offset);
    }

    @Override
    public void read(long off, ByteBuffer dst) throws IOException {
        file.debugEvent("read_aio");
        file.read(offset + off, dst);
    }

    @Override
    public void write(long off, ByteBuffer src) throws IOException {
        file.debugEvent("write_aio");
        file.write(offset + off, src);
    }

    @Override
    public HostRun hostRun(long off, long length) throws IOException {
        return file.hostRun(offset + off, length);
    }

    @Override
    public boolean writeHost(long off, HostRun run) throws IOException {
        file.debugEvent("write_aio");
        file.writeHost(offset + off, run);
        return true;
    }

    @Override
    public void writeZeroes(long off, long length, boolean mayUnmap) throws IOException {
        file.writeZeroes(offset + off, length, mayUnmap);
    }

    @Override
    public void discard(long off, long length) throws IOException {
        file.discard(offset + off, length);
    }

    @Override
    public void flush() throws IOException {
        file.flush();
    }

    @Override
    public void startWriteback() throws IOException {
        file.driver().startWriteback();
    }

    @Override
    public List<Extent> blockStatus(long off, long length) throws IOException {
        List<Extent> out = new ArrayList<>();
        for (Extent e : file.blockStatus(offset + off, length)) {
            out.add(new Extent(e.offset() - offset, e.length(), e.kind(), 0, e.hostOffset(), e.hostFile()));
        }
        return out;
    }

    /** As QEMU's raw: a window of fixed size cannot change; one with an offset moves its file's end. */
    @Override
    public void truncate(long newLength) throws IOException {
        if (hasSize) {
            throw new BlockException("Cannot resize fixed-size raw disks", BlockException.ENOTSUP);
        }
        if (Long.MAX_VALUE - newLength < offset) {
            throw new BlockException("Disk size too large for the chosen offset", BlockException.EINVAL);
        }
        file.truncate(offset + newLength);
        size = newLength;
    }

    @Override
    public Map<String, BlockNode> children() {
        return Map.of("file", file);
    }

    @Override
    public boolean readOnly() {
        return file.readOnly();
    }

    @Override
    public long allocatedFileSize() throws IOException {
        return file.driver().allocatedFileSize();
    }

    @Override
    public void close() {
        // the file child is closed by the node
    }
}
