package dev.strata.block;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * A filter driver that hands every request to the node below it unchanged: the shape of QEMU's
 * copy-before-write filters, whose work happens beside the requests (Strata's copy-before-write
 * hooks into the filtered node itself). Subclasses name the format and the children.
 */
public abstract class PassThroughFilter implements BlockDriver {
    /** The filtered node, where every request goes. */
    protected final BlockNode filtered;

    protected PassThroughFilter(BlockNode filtered) {
        this.filtered = filtered;
    }

    @Override
    public boolean isFilter() {
        return true;
    }

    @Override
    public long length() throws IOException {
        return filtered.length();
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        filtered.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        filtered.write(offset, src);
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        filtered.writeZeroes(offset, length, mayUnmap);
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        filtered.discard(offset, length);
    }

    @Override
    public void flush() throws IOException {
        filtered.flush();
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        return filtered.blockStatus(offset, length);
    }

    @Override
    public boolean readOnly() {
        return filtered.readOnly();
    }

    @Override
    public int clusterSize() {
        return filtered.clusterSize();
    }

    @Override
    public long allocatedFileSize() throws IOException {
        return filtered.driver().allocatedFileSize();
    }
}
