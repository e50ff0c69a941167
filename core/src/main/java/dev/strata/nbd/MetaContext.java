package dev.strata.nbd;

import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.nbd.NbdProtocol;
import java.io.IOException;

/**
 * A metadata context an export offers to NBD_CMD_BLOCK_STATUS (reference/qemu-nbd.rst): each
 * describes a range as runs of (length, flags) and has the fixed id QEMU gives it, so that a
 * client sees the same ids from Strata as from qemu-storage-daemon.
 */
sealed interface MetaContext {
    String BASE_ALLOCATION = "base:allocation";
    String ALLOCATION_DEPTH = "qemu:allocation-depth";
    String DIRTY_BITMAP_PREFIX = "qemu:dirty-bitmap:";

    String name();

    /** The context id sent in replies to SET_META_CONTEXT and in BLOCK_STATUS chunks. */
    int id();

    /** Appends the runs of {@code [offset, offset+length)} until the range or {@code out} is full. */
    void extents(long offset, long length, ExtentList out) throws IOException;

    /** Block status is asked window by window, so a full list stops the walk over a huge range. */
    long WINDOW = 256L << 20;

    /** Feeds the node's extents to {@code out} window by window, each mapped to its flags. */
    static void walk(
            BlockNode node, long offset, long length, ExtentList out, java.util.function.ToIntFunction<Extent> flags)
            throws IOException {
        long end = offset + length;
        for (long pos = offset; pos < end; ) {
            long n = Math.min(WINDOW, end - pos);
            for (Extent e : node.blockStatus(pos, n)) {
                if (!out.add(e.length(), flags.applyAsInt(e))) {
                    return;
                }
            }
            pos += n;
        }
    }

    /** {@code base:allocation}: data reads as flags 0, anything that reads as zeros as HOLE|ZERO. */
    record BaseAllocation(BlockNode node) implements MetaContext {
        @Override
        public String name() {
            return BASE_ALLOCATION;
        }

        @Override
        public int id() {
            return 0;
        }

        @Override
        public void extents(long offset, long length, ExtentList out) throws IOException {
            walk(
                    node,
                    offset,
                    length,
                    out,
                    e -> e.kind() == Extent.Kind.DATA ? 0 : NbdProtocol.STATE_HOLE | NbdProtocol.STATE_ZERO);
        }
    }

    /** {@code qemu:allocation-depth}: 0 where no layer holds the data, else 1 + the layer's depth. */
    record AllocationDepth(BlockNode node) implements MetaContext {
        @Override
        public String name() {
            return ALLOCATION_DEPTH;
        }

        @Override
        public int id() {
            return 1;
        }

        @Override
        public void extents(long offset, long length, ExtentList out) throws IOException {
            walk(node, offset, length, out, e -> e.kind() == Extent.Kind.UNALLOCATED ? 0 : e.depth() + 1);
        }
    }

    /** {@code qemu:dirty-bitmap:NAME}: flag 1 (NBD_STATE_DIRTY) over dirty granules. */
    record DirtyBitmapContext(DirtyBitmap bitmap, String bitmapName, int index) implements MetaContext {
        @Override
        public String name() {
            return DIRTY_BITMAP_PREFIX + bitmapName;
        }

        @Override
        public int id() {
            return 2 + index;
        }

        @Override
        public void extents(long offset, long length, ExtentList out) {
            long end = offset + length;
            long pos = offset;
            while (pos < end) {
                boolean dirty = bitmap.isDirty(pos);
                long next;
                if (dirty) {
                    next = bitmap.nextClean(pos);
                } else {
                    next = bitmap.nextDirty(pos);
                    if (next < 0) {
                        next = end;
                    }
                }
                next = Math.min(Math.max(next, pos + 1), end);
                if (!out.add(next - pos, dirty ? NbdProtocol.STATE_DIRTY : 0)) {
                    return;
                }
                pos = next;
            }
        }
    }
}
