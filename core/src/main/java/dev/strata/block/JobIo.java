package dev.strata.block;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * A block job's own requests on one node: a backup's reads of its source and writes to its target,
 * and copy-before-write's. They run no before-write hooks, and they are admitted even while the
 * node is drained ({@link IoGate#enterAlways}); a drain still waits for them to finish. So a guest
 * write that waits for a copy never waits on a drain that waits for that guest write (QEMU lets a
 * job's own requests through a drain for the same reason). Writes are tracked in the node's
 * bitmaps like any other.
 */
public final class JobIo {
    private final BlockNode node;

    JobIo(BlockNode node) {
        this.node = node;
    }

    public void read(long offset, ByteBuffer dst) throws IOException {
        node.checkRange(offset, dst.remaining());
        node.enterAlways();
        try {
            node.driver().read(offset, dst);
        } finally {
            node.gate().leave();
        }
    }

    public void write(long offset, ByteBuffer src) throws IOException {
        node.checkWritable();
        long length = src.remaining();
        node.checkRange(offset, length);
        node.enterAlways();
        try {
            node.driver().write(offset, src);
        } finally {
            node.bitmaps().markDirty(offset, length);
            node.gate().leave();
        }
    }

    /**
     * Copy offload: calls {@code use} with where the first bytes of the range lie in a host file,
     * the node held open meanwhile; returns what {@code use} returns, or 0 when those bytes are not
     * stored plainly (the caller reads them). See {@link BlockNode#withHostRun}.
     */
    public long withHostRun(long offset, long length, BlockNode.HostRunUse use) throws IOException {
        node.checkRange(offset, length);
        node.enterAlways();
        try {
            return node.withHostRunInGate(offset, length, use);
        } finally {
            node.gate().leave();
        }
    }

    /** Writes the bytes of {@code run} at {@code offset}, inside the kernel where the driver can. */
    public void writeHost(long offset, HostRun run) throws IOException {
        node.checkWritable();
        node.checkRange(offset, run.length());
        node.enterAlways();
        try {
            node.writeHostInGate(offset, run);
        } finally {
            node.bitmaps().markDirty(offset, run.length());
            node.gate().leave();
        }
    }

    /** See {@link BlockDriver#startWriteback}; nothing on a node whose flushes do nothing. */
    public void startWriteback() throws IOException {
        if (node.noFlush()) {
            return;
        }
        node.enterAlways();
        try {
            node.driver().startWriteback();
        } finally {
            node.gate().leave();
        }
    }

    /** See {@link BlockDriver#setMetadataWriteback}. */
    public void setMetadataWriteback(boolean on) throws IOException {
        node.enterAlways();
        try {
            node.driver().setMetadataWriteback(on);
        } finally {
            node.gate().leave();
        }
    }

    /** Zeros with allocation kept, so a backing file never shows through. */
    public void writeZeroes(long offset, long length) throws IOException {
        node.checkWritable();
        node.checkRange(offset, length);
        if (length > 0) {
            node.enterAlways();
            try {
                node.driver().writeZeroes(offset, length, false);
            } finally {
                node.bitmaps().markDirty(offset, length);
                node.gate().leave();
            }
        }
    }

    /** Whether the node's driver can write compressed clusters. */
    public boolean canCompress() {
        return node.driver() instanceof CompressedWriter;
    }

    /** One whole cluster written compressed; false (nothing written) when the driver cannot. */
    public boolean writeCompressed(long offset, ByteBuffer src) throws IOException {
        node.checkWritable();
        if (!(node.driver() instanceof CompressedWriter cw)) {
            return false;
        }
        long length = src.remaining();
        node.checkRange(offset, length);
        node.enterAlways();
        try {
            cw.writeCompressed(offset, src);
        } finally {
            node.bitmaps().markDirty(offset, length);
            node.gate().leave();
        }
        return true;
    }

    /** Block status through the backing chain, as {@link BlockNode#blockStatus}. */
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        node.checkRange(offset, length);
        node.enterAlways();
        try {
            return node.blockStatusInGate(offset, length);
        } finally {
            node.gate().leave();
        }
    }
}
