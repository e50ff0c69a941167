package dev.strata.backup;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The driver of a backup's filter node (QEMU's {@code copy-before-write}, the backup's {@code
 * filter-node-name}): every request goes to the source node, so a write through the filter gets
 * the source's copy-before-write and dirty tracking exactly as a guest's write does. The filter
 * holds nothing of its own; Strata's copy-before-write lives on the source, so writes that reach
 * the source another way (an NBD export of it) are saved just the same.
 */
public final class CopyBeforeWriteFilter implements BlockDriver {
    private final BlockNode source;
    private final Map<String, BlockNode> children;

    public CopyBeforeWriteFilter(BlockNode source, BlockNode target) {
        this.source = source;
        Map<String, BlockNode> c = new LinkedHashMap<>();
        c.put("file", source);
        c.put("target", target);
        this.children = java.util.Collections.unmodifiableMap(c);
    }

    @Override
    public String format() {
        return "copy-before-write";
    }

    @Override
    public boolean isFilter() {
        return true;
    }

    @Override
    public long length() throws IOException {
        return source.length();
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        source.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        source.write(offset, src);
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        source.writeZeroes(offset, length, mayUnmap);
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        source.discard(offset, length);
    }

    @Override
    public void flush() throws IOException {
        source.flush();
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        return source.blockStatus(offset, length);
    }

    @Override
    public Map<String, BlockNode> children() {
        return children;
    }

    @Override
    public boolean readOnly() {
        return source.readOnly();
    }

    @Override
    public int clusterSize() {
        return source.clusterSize();
    }

    @Override
    public long allocatedFileSize() throws IOException {
        return source.driver().allocatedFileSize();
    }

    @Override
    public void close() {
        // the source and the target belong to the graph and the job
    }
}
