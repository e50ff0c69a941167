package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * One change of a qcow2 image's virtual size (qemu-img resize, block_resize), done the way QEMU
 * 7.2's qcow2 driver does it, refusals worded as QEMU words them.
 *
 * <p>Growing: the L1 table grows to exactly the entries the new size needs (when it must), then the
 * new area is made to read as zeros where it would not already, then the header's size changes.
 * The new area reads as zeros without any write when nothing shows through it; when the backing
 * file is longer than the old size, its data would show, so (as QEMU does) the new clusters become
 * zero clusters; a version 2 image has no zero clusters and is refused as QEMU refuses it.
 *
 * <p>Shrinking: the entries of clusters past the new end are dropped and what they held is freed
 * (L2 tables wholly past the end go with their L1 entries, which are cleared in one write); the
 * header's size changes; the file is cut after its last cluster in use. The L1 table keeps its
 * size, as in QEMU. QEMU also drops refcount blocks that count nothing but themselves; Strata
 * keeps them (they are valid, and only a shrink by terabytes leaves any).
 *
 * <p>Where Strata does better than QEMU 7.2: the part of the last cluster past the old end is
 * zeroed when the image grows, so data cut off by an earlier shrink to a size that is not a
 * multiple of the cluster size never reappears (QEMU shows it again).
 *
 * <p>Crash consistency: each step leaves a valid image, with leaks at worst. A new L1 table is
 * written and flushed before one 12-byte header write (l1_size and l1_table_offset together)
 * switches to it, and that is flushed before the old table is freed; the size is written only
 * after the L1 table is big enough for it. When shrinking, L1 and L2 entries are cleared, and the
 * clearing flushed, before any refcount drops.
 *
 * <p>Concurrency: runs under the driver's exclusive metadata lock, with the node drained.
 */
final class Qcow2Resize {
    private static final int SIZE_OFFSET = 24;
    private static final int L1_FIELDS_OFFSET = 36;

    private final Qcow2Driver driver;
    private final ImageFile file;
    private final ClusterMap map;
    private final Refcounts refcounts;
    private final BlockNode backing;
    private final Qcow2Header header;
    private final int clusterBits;
    private final int clusterSize;

    Qcow2Resize(
            Qcow2Driver driver,
            ImageFile file,
            ClusterMap map,
            Refcounts refcounts,
            BlockNode backing,
            Qcow2Header header) {
        this.driver = driver;
        this.file = file;
        this.map = map;
        this.refcounts = refcounts;
        this.backing = backing;
        this.header = header;
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
    }

    /** Resizes from {@code oldSize} to {@code newSize}; returns the header as it now is. */
    Qcow2Header resize(long oldSize, long newSize) throws IOException {
        if ((newSize & 511) != 0) {
            throw new BlockException("The new size must be a multiple of 512", BlockException.EINVAL);
        }
        if (header.nbSnapshots() > 0 && header.version() < 3) {
            // QEMU 7.2: a v2 snapshot table does not record each snapshot's size
            throw new BlockException("Can't resize a v2 image which has snapshots", BlockException.ENOTSUP);
        }
        return newSize < oldSize ? shrink(oldSize, newSize) : grow(oldSize, newSize);
    }

    private Qcow2Header grow(long oldSize, long newSize) throws IOException {
        long entries = Qcow2Header.requiredL1Entries(newSize, clusterBits, map.l2Entries());
        if (entries > Qcow2Header.MAX_L1_BYTES / 8) {
            throw new BlockException("Failed to grow the L1 table: File too large", BlockException.EFBIG);
        }
        Qcow2Header h = header;
        if (entries > map.l1Size()) {
            growL1((int) entries);
            h = h.withSizeAndL1(h.size(), (int) entries, map.l1Offset());
        }
        long alignedOld = roundUp(oldSize);
        // as QEMU's bdrv_co_truncate: a longer backing file must not show through the new area
        boolean hideBacking = backing != null && newSize > oldSize && backing.length() > oldSize;
        if (hideBacking && newSize > alignedOld && header.version() < 3) {
            throw new BlockException(
                    "Failed to zero out new clusters: Operation not supported", BlockException.ENOTSUP);
        }
        driver.setLengthForResize(newSize);
        try {
            long tailEnd = Math.min(alignedOld, newSize);
            if (tailEnd > oldSize) {
                driver.writeZeroes(oldSize, tailEnd - oldSize, false);
            }
            if (hideBacking && newSize > alignedOld) {
                driver.writeZeroes(alignedOld, newSize - alignedOld, false);
            }
            writeSize(newSize);
        } catch (IOException | RuntimeException e) {
            driver.setLengthForResize(oldSize);
            throw e;
        }
        return h.withSizeAndL1(newSize, h.l1Size(), h.l1TableOffset());
    }

    /**
     * Moves the active L1 table to a new run of clusters with {@code entries} entries: the new
     * table is written and flushed, one header write switches to it, then the old one is freed.
     */
    private void growL1(int entries) throws IOException {
        int oldEntries = map.l1Size();
        long oldOffset = map.l1Offset();
        long bytes = 8L * entries;
        int clusters = (int) ((bytes + clusterSize - 1) >>> clusterBits);
        long offset = refcounts.allocateContiguous(clusters);
        long[] table = map.l1Extended(entries);
        ByteBuffer b = ByteBuffer.allocate((int) bytes);
        b.asLongBuffer().put(table);
        // QEMU writes just the entries, so a table at the end leaves the file a cluster short
        file.write(offset, b);
        file.flush();
        file.write(L1_FIELDS_OFFSET, ByteBuffer.allocate(12).putInt(0, entries).putLong(4, offset));
        file.flush();
        map.replaceL1(table, offset);
        refcounts.reserve(new long[] {offset, (long) clusters << clusterBits});
        if (oldEntries > 0) {
            refcounts.free(oldOffset, 8L * oldEntries);
        }
    }

    private Qcow2Header shrink(long oldSize, long newSize) throws IOException {
        long bytesPerL2 = (long) map.l2Entries() << clusterBits;
        int entries = (int) Qcow2Header.requiredL1Entries(newSize, clusterBits, map.l2Entries());
        // clusters past the new end in the last table that stays (QEMU discards from the cluster
        // after the one holding the new end)
        long from = roundUp(newSize);
        long to = Math.min(roundUp(oldSize), entries * bytesPerL2);
        if (from < to) {
            driver.dropEntries(from, to);
        }
        dropTablesFrom(entries);
        cutFile();
        writeSize(newSize);
        driver.setLengthForResize(newSize);
        return header.withSizeAndL1(newSize, header.l1Size(), header.l1TableOffset());
    }

    /** Clears L1 entries from {@code first} on, then frees their L2 tables and everything these held. */
    private void dropTablesFrom(int first) throws IOException {
        if (first >= map.l1Size()) {
            return;
        }
        long[] old = map.clearL1From(first);
        file.flush();
        for (int i = 0; i < old.length; i++) {
            byte[] t = map.detachedL2(old[i], first + i);
            if (t == null) {
                continue;
            }
            // the table is no longer reachable: each entry's reference goes (runs of contiguous
            // clusters in one refcount update each), then the table's own
            long runStart = 0;
            long runLength = 0;
            for (int k = 0; k < map.l2Entries(); k++) {
                long e = ClusterMap.entry(t, k);
                long[] r = map.referencedRange(e);
                if (r == null) {
                    continue;
                }
                if (ClusterMap.type(e) != ClusterMap.Type.COMPRESSED && r[0] == runStart + runLength) {
                    runLength += r[1];
                    continue;
                }
                refcounts.free(runStart, runLength);
                if (ClusterMap.type(e) == ClusterMap.Type.COMPRESSED) {
                    refcounts.free(r[0], r[1]);
                    runLength = 0;
                } else {
                    runStart = r[0];
                    runLength = r[1];
                }
            }
            refcounts.free(runStart, runLength);
            refcounts.free(old[i] & ClusterMap.OFFSET_MASK, clusterSize);
        }
    }

    /** Cuts the file after its last cluster in use, as QEMU does after a shrink. */
    private void cutFile() throws IOException {
        long length = file.length();
        long last = refcounts.lastUsedCluster(length);
        long end = (last + 1) << clusterBits;
        if (last >= 0 && end < length) {
            try {
                file.truncate(end);
            } catch (IOException e) {
                // QEMU only warns here: the image is valid with its tail, just longer than it need be
            }
        }
    }

    private void writeSize(long newSize) throws IOException {
        file.write(SIZE_OFFSET, ByteBuffer.allocate(8).putLong(0, newSize));
        file.flush();
    }

    private long roundUp(long v) {
        return (v + clusterSize - 1) & -(long) clusterSize;
    }
}
