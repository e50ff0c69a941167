package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The refcount structure of an image (refcount table plus refcount blocks) and the cluster
 * allocator built on it: every host cluster in use has a refcount of at least 1, and a cluster
 * with refcount 0 is free for the next allocation.
 *
 * <p>Refcount widths of 1 to 64 bits are read and written; entries narrower than a byte are
 * packed least significant bit first, as the spec says.
 *
 * <p>Crash consistency: every change is written through at once, in an order that keeps the image
 * valid at each write. A new refcount block is written (already counting itself) before the table
 * entry that points to it. A grown refcount table is written, with the new blocks that count it,
 * wholly in space the old table does not cover, and only then does one header write switch to
 * it; the old table is freed after that. Allocation raises refcounts before the caller writes
 * anything that points to the new clusters; freeing lowers them after the caller removed the
 * last pointer. A crash between the two leaves a leak, never a cluster in use with refcount 0.
 * With write-back on ({@link DeferredMetadata}), raised refcounts wait in memory, and what would
 * break that order (a drop, a new block, a new table) writes them back first.
 *
 * <p>Concurrency: not thread-safe; the driver calls it only under its exclusive metadata lock.
 */
final class Refcounts {
    private static final long REFT_OFFSET_MASK = 0xffff_ffff_ffff_fe00L;

    // set at open, never changed
    private final ImageFile file;
    private final int clusterBits;
    private final int clusterSize;
    private final int refcountOrder;
    private final long maxRefcount;
    /** Refcount entries per block. */
    private final int blockEntries;

    private final int blockEntriesBits;
    private final TableCache blocks;
    /** Ranges that refcounts must never hand out even if they claim to be free (the active L1 table). */
    private long[] reserved;

    // guarded by the driver's metadata lock
    private long[] table;
    private long tableOffset;
    private int tableClusters;
    /** Lowest cluster index that may be free. */
    private long freeHint;
    /** One past the highest cluster allocated by this process, written or not. */
    private long highWater;
    /** Where the next compressed cluster may be packed, inside a cluster already counted; 0 for none. */
    private long freeByteOffset;

    Refcounts(ImageFile file, Qcow2Header header, long[] table, long[] reserved) {
        this.file = file;
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
        this.refcountOrder = header.refcountOrder();
        this.maxRefcount = refcountOrder == 6 ? -1L : (1L << (1 << refcountOrder)) - 1;
        this.blockEntriesBits = clusterBits + 3 - refcountOrder;
        this.blockEntries = 1 << blockEntriesBits;
        this.blocks = new TableCache(Math.max(4, (1 << 20) >> clusterBits));
        this.table = table;
        this.tableOffset = header.refcountTableOffset();
        this.tableClusters = header.refcountTableClusters();
        this.reserved = reserved.clone();
    }

    /** Loads the refcount table named in the header; its size was bounded by header validation. */
    static long[] loadTable(ImageFile file, Qcow2Header header) throws IOException {
        int entries = (int) ((long) header.refcountTableClusters() * header.clusterSize() / 8);
        ByteBuffer buf = ByteBuffer.allocate(entries * 8);
        file.read(header.refcountTableOffset(), buf);
        buf.flip();
        long[] t = new long[entries];
        buf.asLongBuffer().get(t);
        return t;
    }

    long tableOffset() {
        return tableOffset;
    }

    int tableClusters() {
        return tableClusters;
    }

    private byte[] block(int tableIndex) throws IOException {
        long off = table[tableIndex] & REFT_OFFSET_MASK;
        if ((off & (clusterSize - 1)) != 0) {
            throw new BlockException("Refblock offset 0x" + Long.toHexString(off) + " unaligned (reftable index: 0x"
                    + Integer.toHexString(tableIndex) + "); the image is corrupt");
        }
        file.checkInside("Refcount block", off, clusterSize);
        return blocks.get(off, o -> file.readTable(o, clusterSize));
    }

    /** The refcount of the cluster with index {@code cluster} (host offset / cluster size). */
    long get(long cluster) throws IOException {
        long t = cluster >>> blockEntriesBits;
        if (t >= table.length || (table[(int) t] & REFT_OFFSET_MASK) == 0) {
            return 0;
        }
        return entry(block((int) t), (int) (cluster & (blockEntries - 1)));
    }

    private long entry(byte[] b, int i) {
        return switch (refcountOrder) {
            case 0, 1, 2 -> {
                int bits = 1 << refcountOrder;
                int bit = i << refcountOrder;
                yield (b[bit >>> 3] >>> (bit & 7)) & ((1 << bits) - 1);
            }
            case 3 -> b[i] & 0xffL;
            case 4 -> ((b[2 * i] & 0xff) << 8) | (b[2 * i + 1] & 0xff);
            case 5 -> ByteBuffer.wrap(b).getInt(4 * i) & 0xffff_ffffL;
            default -> ByteBuffer.wrap(b).getLong(8 * i);
        };
    }

    private void setEntry(byte[] b, int i, long v) {
        setEntry(refcountOrder, b, i, v);
    }

    /** Sets entry {@code i} of refcount block {@code b} to {@code v}, entries being 2^{@code refcountOrder} bits wide. */
    static void setEntry(int refcountOrder, byte[] b, int i, long v) {
        switch (refcountOrder) {
            case 0, 1, 2 -> {
                int bits = 1 << refcountOrder;
                int bit = i << refcountOrder;
                int mask = ((1 << bits) - 1) << (bit & 7);
                b[bit >>> 3] = (byte) ((b[bit >>> 3] & ~mask) | ((int) (v << (bit & 7)) & mask));
            }
            case 3 -> b[i] = (byte) v;
            case 4 -> {
                b[2 * i] = (byte) (v >>> 8);
                b[2 * i + 1] = (byte) v;
            }
            case 5 -> ByteBuffer.wrap(b).putInt(4 * i, (int) v);
            default -> ByteBuffer.wrap(b).putLong(8 * i, v);
        }
    }

    /** Byte range [from, to) of a block holding entries [first, last]. */
    private int byteOf(int entry) {
        return (int) (((long) entry << refcountOrder) >>> 3);
    }

    // ---------------------------------------------------------------------------------------
    // allocation

    /** Allocates one free cluster (refcount 0 -> 1, written before returning); returns its host offset. */
    long allocate() throws IOException {
        return allocateRun(1)[0];
    }

    /**
     * Allocates a run of 1 to {@code max} contiguous free clusters at the first free cluster from
     * the free-cluster hint (past the last free run this appends at the end of the file), raising
     * their refcounts before returning {@code {hostOffset, clusters}}. The run may be shorter than
     * asked: a refcount block created for it takes a cluster, and blocks sit between their ranges.
     */
    long[] allocateRun(int max) throws IOException {
        if (max <= 0) {
            throw new IllegalArgumentException("allocate " + max);
        }
        while (true) {
            long start = findFree();
            long n = runFrom(start, max);
            // every refcount block for the run must exist before the run can be counted; making
            // one takes a cluster (perhaps inside the run), so search again afterwards
            boolean changed = false;
            for (long t = start >>> blockEntriesBits; t <= (start + n - 1) >>> blockEntriesBits && !changed; t++) {
                changed = ensureBlock(t);
            }
            if (changed) {
                continue;
            }
            checkNotReserved(start, (int) n);
            update(start, n, +1);
            if (start == freeHint) {
                freeHint = start + n;
            }
            highWater = Math.max(highWater, start + n);
            return new long[] {start << clusterBits, n};
        }
    }

    /**
     * Allocates {@code n} contiguous free clusters (a new L1 table must be one run), at the first
     * place from the free-cluster hint where they fit; refcounts are raised before returning the
     * host offset.
     */
    long allocateContiguous(int n) throws IOException {
        if (n <= 0) {
            throw new IllegalArgumentException("allocate " + n);
        }
        long from = freeHint;
        while (true) {
            long start = firstFreeFrom(from);
            long len = runFrom(start, n);
            if (len < n) {
                // cluster start + len is in use: no run of n fits before it
                from = start + len + 1;
                continue;
            }
            boolean changed = false;
            for (long t = start >>> blockEntriesBits; t <= (start + n - 1) >>> blockEntriesBits && !changed; t++) {
                changed = ensureBlock(t);
            }
            if (changed) {
                // a new refcount block took a cluster, perhaps inside the run: search again
                continue;
            }
            checkNotReserved(start, n);
            update(start, n, +1);
            highWater = Math.max(highWater, start + n);
            return start << clusterBits;
        }
    }

    /** Replaces the ranges never to hand out (the L1 table moved): {offset, length} pairs. */
    void reserve(long[] ranges) {
        reserved = ranges.clone();
    }

    /**
     * The index of the last cluster below {@code fileLength} with a refcount above 0, or -1 when
     * there is none (QEMU's qcow2_get_last_cluster, used to cut the file after a shrink).
     */
    long lastUsedCluster(long fileLength) throws IOException {
        for (long c = ((fileLength + clusterSize - 1) >>> clusterBits) - 1; c >= 0; c--) {
            if (get(c) > 0) {
                return c;
            }
        }
        return -1;
    }

    /**
     * Allocates {@code size} bytes (less than a cluster) for compressed data, packed back to back
     * after the previous allocation, as QEMU's qcow2_alloc_bytes does: the bytes may run into a
     * new cluster when that one directly follows, and every cluster the range touches gains one
     * reference, so a host cluster holding k compressed clusters has refcount k. Returns the host
     * offset; refcounts are written before returning.
     */
    long allocateBytes(int size) throws IOException {
        if (size <= 0 || size >= clusterSize) {
            throw new IllegalArgumentException("allocate " + size + " bytes");
        }
        long offset = freeByteOffset;
        if (offset != 0 && get(offset >>> clusterBits) == maxRefcount) {
            offset = 0;
        }
        long freeInCluster = offset == 0 ? 0 : clusterSize - (offset & (clusterSize - 1));
        if (offset != 0 && freeInCluster >= size) {
            update(offset >>> clusterBits, 1, +1);
        } else {
            long fresh = allocate();
            if (offset != 0 && ((offset + clusterSize - 1) & -(long) clusterSize) == fresh) {
                // the fresh cluster (refcount 1 already) continues the partly used one
                update(offset >>> clusterBits, 1, +1);
            } else {
                offset = fresh;
            }
        }
        long next = offset + size;
        freeByteOffset = (next & (clusterSize - 1)) == 0 ? 0 : next;
        return offset;
    }

    private boolean isFree(long c) throws IOException {
        long t = c >>> blockEntriesBits;
        if (t >= table.length || (table[(int) t] & REFT_OFFSET_MASK) == 0) {
            return true;
        }
        return entry(block((int) t), (int) (c & (blockEntries - 1))) == 0;
    }

    /** The first free cluster at or after the hint, which becomes the new hint. */
    private long findFree() throws IOException {
        freeHint = firstFreeFrom(freeHint);
        return freeHint;
    }

    private long firstFreeFrom(long from) throws IOException {
        long c = from;
        while (true) {
            long t = c >>> blockEntriesBits;
            if (t >= table.length || (table[(int) t] & REFT_OFFSET_MASK) == 0) {
                return c;
            }
            byte[] b = block((int) t);
            for (int i = (int) (c & (blockEntries - 1)); i < blockEntries; i++, c++) {
                if (entry(b, i) == 0) {
                    return c;
                }
            }
        }
    }

    /** Free clusters from {@code start} (which is free), at most {@code max}. */
    private long runFrom(long start, int max) throws IOException {
        long n = 1;
        while (n < max && isFree(start + n)) {
            n++;
        }
        return n;
    }

    private void checkNotReserved(long startCluster, int n) throws BlockException {
        long from = startCluster << clusterBits;
        long to = (startCluster + n) << clusterBits;
        if (from < clusterSize || overlaps(from, to, tableOffset, (long) tableClusters << clusterBits)) {
            throw corruptFree(from);
        }
        for (int i = 0; i + 1 < reserved.length; i += 2) {
            if (overlaps(from, to, reserved[i], reserved[i + 1])) {
                throw corruptFree(from);
            }
        }
    }

    private static boolean overlaps(long from, long to, long off, long len) {
        return len > 0 && from < off + len && off < to;
    }

    private static BlockException corruptFree(long offset) {
        return new BlockException("Refcounts claim metadata at host offset 0x" + Long.toHexString(offset)
                + " is free; the image is corrupt (run 'qemu-img check -r all')");
    }

    /**
     * Makes sure refcount block {@code t} exists. A new block is placed at the first cluster it
     * covers: with no block, every cluster there has refcount 0, so that cluster is free, and the
     * block counts itself. Returns whether anything was allocated.
     */
    private boolean ensureBlock(long t) throws IOException {
        if (t < table.length && (table[(int) t] & REFT_OFFSET_MASK) != 0) {
            return false;
        }
        if (t >= table.length) {
            growTable(t + 1);
            return true;
        }
        // a new block and its table entry are written through: what waits goes first
        file.deferred().writeBack();
        long cluster = t << blockEntriesBits;
        checkNotReserved(cluster, 1);
        long off = cluster << clusterBits;
        byte[] b = new byte[clusterSize];
        setEntry(b, 0, 1);
        file.write(off, b, 0, clusterSize);
        blocks.put(off, b);
        setTableEntry((int) t, off);
        return true;
    }

    private void setTableEntry(int t, long value) throws IOException {
        table[t] = value;
        ByteBuffer e = ByteBuffer.allocate(8).putLong(0, value);
        file.write(tableOffset + 8L * t, e);
    }

    /**
     * Moves the refcount table to a bigger one that has at least {@code minEntries} entries. The
     * new table and the blocks that count it go past everything the old table covers and past the
     * end of the file, so nothing reachable from the old header changes until the header switches.
     */
    private void growTable(long minEntries) throws IOException {
        file.deferred().writeBack();
        long entriesPerCluster = clusterSize / 8;
        long wanted = Math.max(minEntries, table.length + (table.length >> 1) + 1);
        long newClusters = (wanted + entriesPerCluster - 1) / entriesPerCluster;
        if (newClusters * clusterSize > Qcow2Header.MAX_REFTABLE_BYTES) {
            newClusters = Qcow2Header.MAX_REFTABLE_BYTES / clusterSize;
            if (newClusters * entriesPerCluster < minEntries) {
                throw new BlockException(
                        "Image is too big: the refcount table would exceed 8 MiB", BlockException.EFBIG);
            }
        }
        long fileClusters = (file.length() + clusterSize - 1) >>> clusterBits;
        long start = Math.max(Math.max((long) table.length << blockEntriesBits, fileClusters), highWater);
        // the new area holds the table, then the blocks covering the area itself
        long blockCount = 0;
        while (true) {
            long areaEnd = start + newClusters + blockCount;
            long firstT = start >>> blockEntriesBits;
            long lastT = (areaEnd - 1) >>> blockEntriesBits;
            long needed = lastT - firstT + 1;
            long tableEntries = newClusters * entriesPerCluster;
            if (lastT >= tableEntries) {
                newClusters++;
                continue;
            }
            if (needed == blockCount) {
                break;
            }
            blockCount = needed;
        }
        long tableStart = start;
        long blocksStart = start + newClusters;
        long areaEnd = blocksStart + blockCount;
        long firstT = start >>> blockEntriesBits;
        long[] newTable = new long[(int) (newClusters * entriesPerCluster)];
        System.arraycopy(table, 0, newTable, 0, table.length);
        for (long k = 0; k < blockCount; k++) {
            long t = firstT + k;
            long blockCluster = blocksStart + k;
            byte[] b = new byte[clusterSize];
            long from = Math.max(start, t << blockEntriesBits);
            long to = Math.min(areaEnd, (t + 1) << blockEntriesBits);
            for (long c = from; c < to; c++) {
                setEntry(b, (int) (c & (blockEntries - 1)), 1);
            }
            long off = blockCluster << clusterBits;
            file.write(off, b, 0, clusterSize);
            blocks.put(off, b);
            newTable[(int) t] = off;
        }
        ByteBuffer tb = ByteBuffer.allocate(newTable.length * 8);
        tb.asLongBuffer().put(newTable);
        long newTableOffset = tableStart << clusterBits;
        file.write(newTableOffset, tb);

        // one write switches both header fields (refcount_table_offset, refcount_table_clusters)
        ByteBuffer hdr = ByteBuffer.allocate(12).putLong(0, newTableOffset).putInt(8, (int) newClusters);
        file.write(48, hdr);

        long oldOffset = tableOffset;
        int oldClusters = tableClusters;
        table = newTable;
        tableOffset = newTableOffset;
        tableClusters = (int) newClusters;
        free(oldOffset, (long) oldClusters << clusterBits);
    }

    /**
     * Adds {@code delta} (+1 or -1) to the refcount of every cluster in [first, first+n), writing
     * each touched block's changed bytes once. Blocks must exist for increments; a decrement of a
     * cluster without block or with refcount 0 is refused as corruption.
     */
    private void update(long first, long n, int delta) throws IOException {
        if (delta < 0) {
            // a drop comes after the pointer's removal reached the file, and that may be waiting
            file.deferred().writeBack();
        }
        long c = first;
        long end = first + n;
        while (c < end) {
            long t = c >>> blockEntriesBits;
            if (t >= table.length || (table[(int) t] & REFT_OFFSET_MASK) == 0) {
                throw new BlockException("Refcount of cluster 0x" + Long.toHexString(c) + " is 0 but it is in use;"
                        + " the image is corrupt (run 'qemu-img check -r all')");
            }
            byte[] b = block((int) t);
            int i0 = (int) (c & (blockEntries - 1));
            int i1 = (int) Math.min(blockEntries, i0 + (end - c));
            for (int i = i0; i < i1; i++) {
                long v = entry(b, i);
                long nv = v + delta;
                if (delta > 0 && (v == maxRefcount)) {
                    throw new BlockException("Refcount overflow for cluster 0x" + Long.toHexString(c + i - i0));
                }
                if (delta < 0 && v == 0) {
                    throw new BlockException("Refcount of cluster 0x" + Long.toHexString(c + i - i0)
                            + " would drop below 0; the image is corrupt (run 'qemu-img check -r all')");
                }
                setEntry(b, i, nv);
                if (nv == 0) {
                    freeHint = Math.min(freeHint, c + i - i0);
                    if (freeByteOffset != 0 && freeByteOffset >>> clusterBits == c + i - i0) {
                        // a freed cluster may be reused whole: never pack into it again
                        freeByteOffset = 0;
                    }
                }
            }
            int from = byteOf(i0);
            int to = Math.max(from + 1, byteOf(i1 - 1) + Math.max(1, (1 << refcountOrder) / 8));
            long blockOff = table[(int) t] & REFT_OFFSET_MASK;
            if (delta > 0 && file.deferred().refcountBlock(blockOff, b, from, to)) {
                c += i1 - i0;
                continue;
            }
            try {
                file.write(blockOff + from, b, from, to - from);
            } catch (IOException e) {
                blocks.invalidate(blockOff);
                throw e;
            }
            c += i1 - i0;
        }
    }

    /**
     * Drops one reference from every cluster overlapping [offset, offset+length). Callers free
     * only after the last pointer to the range is gone from the file.
     */
    void free(long offset, long length) throws IOException {
        if (length <= 0) {
            return;
        }
        long first = offset >>> clusterBits;
        long last = (offset + length - 1) >>> clusterBits;
        update(first, last - first + 1, -1);
    }
}
