package dev.strata.block.cbw;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.OpenContext;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;

/**
 * QEMU's {@code snapshot-access}: the point in time a {@code copy-before-write} filter keeps,
 * readable as a node of its own (export it over NBD and pull the backup from it while the guest
 * writes). Reads come from the filter's target where a cluster was saved and from its file
 * elsewhere; a discard tells the filter that part is no longer needed. Writes are refused.
 */
public final class SnapshotAccessDriver implements BlockDriver {
    private final BlockNode file;
    private final CopyBeforeWriteDriver cbw;

    private SnapshotAccessDriver(BlockNode file, CopyBeforeWriteDriver cbw) {
        this.file = file;
        this.cbw = cbw;
    }

    public static SnapshotAccessDriver open(BlockOptions options, OpenContext context) throws IOException {
        BlockNode file = context.openChild(options, "file", context.flags());
        if (file == null) {
            throw new BlockException("A block device must be specified for \"file\"", BlockException.EINVAL);
        }
        if (!(file.driver() instanceof CopyBeforeWriteDriver cbw)) {
            throw new BlockException(
                    "snapshot-access needs a copy-before-write node as its file, not '"
                            + file.driver().format() + "'",
                    BlockException.ENOTSUP);
        }
        return new SnapshotAccessDriver(file, cbw);
    }

    @Override
    public String format() {
        return "snapshot-access";
    }

    @Override
    public long length() throws IOException {
        return file.length();
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        cbw.snapshotRead(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        throw new BlockException("Operation not supported", BlockException.ENOTSUP);
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        throw new BlockException("Operation not supported", BlockException.ENOTSUP);
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        cbw.snapshotDiscard(offset, length);
    }

    @Override
    public void flush() {
        // nothing of its own to make durable
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        return cbw.snapshotBlockStatus(offset, length);
    }

    @Override
    public Map<String, BlockNode> children() {
        return Map.of("file", file);
    }

    @Override
    public boolean readOnly() {
        return false;
    }

    @Override
    public void close() {
        // the file child is closed by the node
    }
}
