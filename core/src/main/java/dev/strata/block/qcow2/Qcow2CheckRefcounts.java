package dev.strata.block.qcow2;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * The refcounts {@code check} computes from the image's metadata (QEMU's "in-memory refcount
 * table"): one unsigned counter per host cluster, stored exactly as qcow2 refcount blocks store
 * them, so that a refcount structure rebuild can write a chunk of this table to disk as it is.
 *
 * <p>The table is split into chunks of one refcount block each (one cluster of bytes), allocated
 * only when a counter in them becomes non-zero. Memory is therefore proportional to the part of
 * the file the metadata actually references, and never exceeds {@code budgetBytes}: a hostile
 * image that references clusters all over a huge sparse file makes the check fail with ENOMEM,
 * as QEMU's does when its allocation fails, instead of exhausting the heap.
 *
 * <p>Entry widths below one byte are packed from the least significant bit of each byte, as the
 * qcow2 specification orders them; wider entries are big-endian.
 */
final class Qcow2CheckRefcounts {
    private static final VarHandle SHORT_BE = MethodHandles.byteArrayViewVarHandle(short[].class, ByteOrder.BIG_ENDIAN);
    private static final VarHandle INT_BE = MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.BIG_ENDIAN);
    private static final VarHandle LONG_BE = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.BIG_ENDIAN);

    /** Thrown when the table would outgrow its memory budget. */
    static final class BudgetExceeded extends Exception {
        private static final long serialVersionUID = 1L;

        BudgetExceeded() {
            super("Cannot allocate memory");
        }
    }

    // set at construction, never changed
    private final int refcountOrder;
    private final int blockBytes;
    private final int blockBits; // log2 of entries per chunk
    private final long max;
    private final long budgetBytes;

    private byte[][] chunks = new byte[0][];
    private long size;
    private long allocatedBytes;

    Qcow2CheckRefcounts(int clusterBits, int refcountOrder, long budgetBytes) {
        this.refcountOrder = refcountOrder;
        this.blockBytes = 1 << clusterBits;
        this.blockBits = clusterBits + 3 - refcountOrder;
        this.max = refcountOrder == 6 ? -1L : (1L << (1 << refcountOrder)) - 1;
        this.budgetBytes = budgetBytes;
    }

    /** Number of clusters the table covers (QEMU's {@code nb_clusters}). */
    long size() {
        return size;
    }

    /** The largest refcount an entry can hold, as an unsigned value. */
    long max() {
        return max;
    }

    /** Entries per refcount block. */
    long entriesPerBlock() {
        return 1L << blockBits;
    }

    int blockBits() {
        return blockBits;
    }

    /**
     * Grows (never shrinks) the table to cover {@code newSize} clusters; new entries are zero. The
     * chunk index itself (8 bytes per refcount block) counts against the budget, so that a huge
     * sparse file with tiny clusters cannot exhaust memory either.
     */
    void ensureSize(long newSize) throws BudgetExceeded {
        if (newSize <= size) {
            return;
        }
        long neededChunks = ((newSize - 1) >>> blockBits) + 1;
        if (neededChunks > chunks.length) {
            long grown = Math.max(neededChunks, Math.min((long) chunks.length * 2, neededChunks + 1024));
            long indexBytes = grown * 8;
            if (grown > Integer.MAX_VALUE - 8 || allocatedBytes + indexBytes > budgetBytes) {
                throw new BudgetExceeded();
            }
            byte[][] n = new byte[(int) grown][];
            System.arraycopy(chunks, 0, n, 0, chunks.length);
            allocatedBytes += indexBytes - (long) chunks.length * 8;
            chunks = n;
        }
        size = newSize;
    }

    long get(long cluster) {
        if (cluster < 0 || cluster >= size) {
            return 0;
        }
        byte[] c = chunks[(int) (cluster >>> blockBits)];
        return c == null ? 0 : decode(c, (int) (cluster & ((1L << blockBits) - 1)), refcountOrder);
    }

    void set(long cluster, long value) throws BudgetExceeded {
        if (cluster < 0 || cluster >= size) {
            throw new IndexOutOfBoundsException("cluster " + cluster + " outside table of " + size);
        }
        int ci = (int) (cluster >>> blockBits);
        byte[] c = chunks[ci];
        if (c == null) {
            if (value == 0) {
                return;
            }
            if (allocatedBytes + blockBytes > budgetBytes) {
                throw new BudgetExceeded();
            }
            c = new byte[blockBytes];
            allocatedBytes += blockBytes;
            chunks[ci] = c;
        }
        encode(c, (int) (cluster & ((1L << blockBits) - 1)), refcountOrder, value);
    }

    /** True when every entry of refcount block {@code index} is zero without looking at them. */
    boolean blockIsEmpty(long index) {
        return index >= chunks.length || chunks[(int) index] == null;
    }

    /**
     * The bytes of refcount block {@code index} as they go to disk (a zero block when nothing in it
     * was counted). The caller must not modify the array.
     */
    byte[] block(long index) {
        byte[] c = index < chunks.length ? chunks[(int) index] : null;
        return c == null ? new byte[blockBytes] : c;
    }

    /** Resets every counter to zero, keeping the size (QEMU's memset before a recount). */
    void clear() {
        java.util.Arrays.fill(chunks, null);
        allocatedBytes = (long) chunks.length * 8;
    }

    /** Reads entry {@code index} of a refcount block in on-disk format. */
    static long decode(byte[] block, int index, int refcountOrder) {
        return switch (refcountOrder) {
            case 0, 1, 2 -> {
                int bits = 1 << refcountOrder;
                int perByte = 8 / bits;
                int shift = (index % perByte) * bits;
                yield (block[index / perByte] >>> shift) & ((1 << bits) - 1);
            }
            case 3 -> block[index] & 0xffL;
            case 4 -> (short) SHORT_BE.get(block, index * 2) & 0xffffL;
            case 5 -> (int) INT_BE.get(block, index * 4) & 0xffffffffL;
            case 6 -> (long) LONG_BE.get(block, index * 8);
            default -> throw new IllegalArgumentException("refcount order " + refcountOrder);
        };
    }

    /** Writes entry {@code index} of a refcount block in on-disk format. */
    static void encode(byte[] block, int index, int refcountOrder, long value) {
        switch (refcountOrder) {
            case 0, 1, 2 -> {
                int bits = 1 << refcountOrder;
                int perByte = 8 / bits;
                int shift = (index % perByte) * bits;
                int mask = ((1 << bits) - 1) << shift;
                int b = block[index / perByte] & ~mask;
                block[index / perByte] = (byte) (b | (((int) value << shift) & mask));
            }
            case 3 -> block[index] = (byte) value;
            case 4 -> SHORT_BE.set(block, index * 2, (short) value);
            case 5 -> INT_BE.set(block, index * 4, (int) value);
            case 6 -> LONG_BE.set(block, index * 8, value);
            default -> throw new IllegalArgumentException("refcount order " + refcountOrder);
        }
    }
}
