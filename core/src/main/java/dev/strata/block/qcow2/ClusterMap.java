package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The guest-to-host cluster map: the active L1 table (held in memory whole) and the L2 tables
 * (through an LRU cache), with the rules for reading an L2 entry.
 *
 * <p>Every offset an entry holds is checked before it is used: L2 tables and data clusters must
 * be cluster-aligned and inside the file, compressed data must start inside the file. A bad entry
 * fails the request that touches it with a message naming the entry; it is never followed.
 *
 * <p>Crash consistency: a new L2 table (zero-filled, or a copy of a shared one) is written whole
 * before the L1 entry points to it, and a shared table's refcount is dropped only after the L1
 * entry no longer points to it. L2 entries are written through at once, so the caller decides the
 * order against data and refcount writes.
 *
 * <p>Concurrency: lookups run under the driver's shared metadata lock, changes under its
 * exclusive lock; the cache itself is internally synchronised for concurrent lookups.
 */
final class ClusterMap {
    static final long OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    static final long COPIED = 1L << 63;
    static final long COMPRESSED = 1L << 62;
    static final long ZERO = 1L;

    private static final VarHandle LONGS = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.BIG_ENDIAN);

    /** What an L2 entry says about its guest cluster, QEMU's cluster types. */
    enum Type {
        UNALLOCATED,
        ZERO_PLAIN,
        ZERO_ALLOC,
        NORMAL,
        COMPRESSED
    }

    // set at open, never changed
    private final ImageFile file;
    private final int clusterBits;
    private final int clusterSize;
    private final int l2Bits;
    private final int csizeShift;
    private final long csizeMask;
    private final long coffsetMask;
    private final TableCache l2Cache;

    // guarded by the driver's metadata lock (entries, and the table itself on a resize, change
    // only under the exclusive lock)
    private long[] l1;
    private long l1Offset;

    ClusterMap(ImageFile file, Qcow2Header header, long[] l1, int cacheBytes) {
        this.file = file;
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
        this.l2Bits = clusterBits - 3;
        this.l1Offset = header.l1TableOffset();
        this.l1 = l1;
        this.csizeShift = 62 - (clusterBits - 8);
        this.csizeMask = (1L << (clusterBits - 8)) - 1;
        this.coffsetMask = (1L << csizeShift) - 1;
        this.l2Cache = new TableCache(Math.max(4, cacheBytes >> clusterBits));
    }

    static long[] loadL1(ImageFile file, Qcow2Header header) throws IOException {
        int n = header.l1Size();
        ByteBuffer buf = ByteBuffer.allocate(n * 8);
        file.read(header.l1TableOffset(), buf);
        buf.flip();
        long[] t = new long[n];
        buf.asLongBuffer().get(t);
        return t;
    }

    int l2Entries() {
        return 1 << l2Bits;
    }

    int l2Bits() {
        return l2Bits;
    }

    int l1Size() {
        return l1.length;
    }

    static long entry(byte[] table, int index) {
        return (long) LONGS.get(table, index << 3);
    }

    static void setEntry(byte[] table, int index, long value) {
        LONGS.set(table, index << 3, value);
    }

    static Type type(long entry) {
        if ((entry & COMPRESSED) != 0) {
            return Type.COMPRESSED;
        }
        long off = entry & OFFSET_MASK;
        if ((entry & ZERO) != 0) {
            return off == 0 ? Type.ZERO_PLAIN : Type.ZERO_ALLOC;
        }
        return off == 0 ? Type.UNALLOCATED : Type.NORMAL;
    }

    /** Whether a write may go straight to the entry's host cluster. */
    static boolean writableInPlace(long entry) {
        return (entry & (COPIED | COMPRESSED | ZERO)) == COPIED && (entry & OFFSET_MASK) != 0;
    }

    /** Host offset of a compressed cluster's data. */
    long compressedOffset(long entry) {
        return entry & coffsetMask;
    }

    /** The L2 entry of a compressed cluster at {@code host} spanning {@code extraSectors} + 1 sectors. */
    long compressedEntry(long host, long extraSectors) {
        return COMPRESSED | (extraSectors << csizeShift) | host;
    }

    /** Bytes of compressed data stored from {@link #compressedOffset}, up to the last sector's end. */
    int compressedSize(long entry) {
        long sectors = ((entry >>> csizeShift) & csizeMask) + 1;
        return (int) (sectors * 512 - (compressedOffset(entry) & 511));
    }

    /** The L2 table for an L1 index, or null when unallocated. */
    byte[] l2(int l1Index) throws IOException {
        long off = l2Offset(l1Index);
        if (off == 0) {
            return null;
        }
        return l2Cache.get(off, o -> file.readTable(o, clusterSize));
    }

    /** The L2 entry for a guest cluster (0 when its table is unallocated or it is past the L1 table). */
    long entryFor(long guestCluster) throws IOException {
        long l1Index = guestCluster >>> l2Bits;
        if (l1Index >= l1.length) {
            return 0;
        }
        byte[] t = l2((int) l1Index);
        return t == null ? 0 : entry(t, (int) (guestCluster & ((1 << l2Bits) - 1)));
    }

    long l1Entry(int l1Index) {
        return l1[l1Index];
    }

    private long l2Offset(int l1Index) throws BlockException {
        return checkedL2Offset(l1[l1Index], l1Index);
    }

    private long checkedL2Offset(long l1Entry, int l1Index) throws BlockException {
        long off = l1Entry & OFFSET_MASK;
        if (off != 0) {
            if ((off & (clusterSize - 1)) != 0) {
                throw new BlockException("L2 table offset 0x" + Long.toHexString(off) + " unaligned (L1 index: 0x"
                        + Integer.toHexString(l1Index) + "); the image is corrupt");
            }
            if (file.deferred().pending(off) == null) {
                // a new table waiting for write-back may lie past the file's end until then
                file.checkInside("L2 table (L1 index 0x" + Integer.toHexString(l1Index) + ")", off, clusterSize);
            }
        }
        return off;
    }

    /** Checks a standard cluster's host offset before data is read from or written to it. */
    void checkDataCluster(long entry, long guestCluster) throws BlockException {
        long off = entry & OFFSET_MASK;
        if ((off & (clusterSize - 1)) != 0) {
            throw new BlockException("Cluster allocation offset 0x" + Long.toHexString(off)
                    + " unaligned (guest offset: 0x" + Long.toHexString(guestCluster << clusterBits)
                    + "); the image is corrupt");
        }
        file.checkInside(
                "Data cluster for guest offset 0x" + Long.toHexString(guestCluster << clusterBits), off, clusterSize);
    }

    /** Checks a compressed cluster's data range: it must start inside the file. */
    void checkCompressed(long entry, long guestCluster) throws BlockException {
        long off = compressedOffset(entry);
        if (off <= 0 || off >= file.length()) {
            throw new BlockException("Compressed cluster for guest offset 0x"
                    + Long.toHexString(guestCluster << clusterBits) + " at host offset 0x" + Long.toHexString(off)
                    + " lies outside the image file; the image is corrupt");
        }
    }

    /**
     * The L2 table for an L1 index, made writable: allocated (zero-filled) when absent, copied
     * when shared (L1 entry without COPIED). Order: new table written, then L1 entry, then the
     * shared table's refcount dropped.
     */
    byte[] writableL2(int l1Index, Refcounts refcounts) throws IOException {
        long l1e = l1[l1Index];
        long oldOff = l2Offset(l1Index);
        if (oldOff != 0 && (l1e & COPIED) != 0) {
            return l2(l1Index);
        }
        byte[] content = oldOff == 0 ? new byte[clusterSize] : l2(l1Index).clone();
        long newOff = refcounts.allocate();
        // with write-back on, the whole table waits, and its L1 entry behind it (DeferredMetadata)
        if (!file.deferred().l2Table(newOff, content, 0, clusterSize)) {
            // the L1 entry below makes the table reachable: its refcount (and every change
            // waiting) goes first
            file.deferred().writeBack();
            file.write(newOff, content, 0, clusterSize);
        }
        l2Cache.put(newOff, content);
        setL1(l1Index, newOff | COPIED);
        if (oldOff != 0) {
            l2Cache.invalidate(oldOff);
            refcounts.free(oldOff, clusterSize);
        }
        return content;
    }

    long l1Offset() {
        return l1Offset;
    }

    /** The active L1 entries, zero-extended to {@code length} (a bigger table for a resize). */
    long[] l1Extended(int length) {
        return java.util.Arrays.copyOf(l1, length);
    }

    /** Switches to a bigger L1 table already written at {@code offset} (a resize, under the exclusive lock). */
    void replaceL1(long[] table, long offset) {
        l1 = table;
        l1Offset = offset;
    }

    /**
     * Clears L1 entries from {@code from} to the end of the table with one write (a shrink); returns
     * the old entries so the caller can free their tables once the write is durable.
     */
    long[] clearL1From(int from) throws IOException {
        long[] old = java.util.Arrays.copyOfRange(l1, from, l1.length);
        if (old.length == 0) {
            return old;
        }
        file.write(l1Offset + 8L * from, new byte[old.length * 8], 0, old.length * 8);
        java.util.Arrays.fill(l1, from, l1.length, 0);
        return old;
    }

    /**
     * Reads the L2 table an L1 entry pointed to before {@link #clearL1From} cleared it (checked as
     * any other, and dropped from the cache, since it is about to be freed); null for none.
     */
    byte[] detachedL2(long l1Entry, int l1Index) throws IOException {
        long off = checkedL2Offset(l1Entry, l1Index);
        if (off == 0) {
            return null;
        }
        byte[] t = new byte[clusterSize];
        file.read(off, t, 0, clusterSize);
        l2Cache.invalidate(off);
        return t;
    }

    private void setL1(int l1Index, long value) throws IOException {
        l1[l1Index] = value;
        long at = l1Offset + 8L * l1Index;
        if (!file.deferred().l1Entry(at, value)) {
            file.write(at, ByteBuffer.allocate(8).putLong(0, value));
        }
    }

    /** Writes entries [from, to) of a writable L2 table (one call per changed run), or defers them. */
    void writeEntries(int l1Index, byte[] table, int from, int to) throws IOException {
        long off = l1[l1Index] & OFFSET_MASK;
        if (file.deferred().l2Table(off, table, from * 8, to * 8)) {
            return;
        }
        try {
            file.write(off + 8L * from, table, from * 8, (to - from) * 8);
        } catch (IOException e) {
            l2Cache.invalidate(off);
            throw e;
        }
    }

    /** The host range a cluster's entry holds a reference on, for freeing: {offset, length}, or null. */
    long[] referencedRange(long entry) {
        return switch (type(entry)) {
            case NORMAL, ZERO_ALLOC -> new long[] {entry & OFFSET_MASK, clusterSize};
            case COMPRESSED -> new long[] {compressedOffset(entry), compressedSize(entry)};
            case UNALLOCATED, ZERO_PLAIN -> null;
        };
    }
}
