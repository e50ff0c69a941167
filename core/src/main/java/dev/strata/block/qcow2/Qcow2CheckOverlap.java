package dev.strata.block.qcow2;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The metadata a repair write must not land on (QEMU's metadata overlap check in its default
 * "cached" mode): the header, the active L1 table and its L2 tables, the refcount table and
 * blocks, the snapshot table, the snapshots' L1 tables and the bitmap directory.
 *
 * <p>Overlap is decided per cluster, as QEMU decides it. The structures are captured when the
 * guard is built; a rebuild that installs a new refcount structure builds a new guard. The many
 * small structures (L2 tables, refcount blocks) are kept as sorted cluster numbers, so a check costs
 * a binary search rather than a walk of the L1 table.
 */
final class Qcow2CheckOverlap {
    /** What a write overlaps, with QEMU's names for the structures. */
    enum Kind {
        MAIN_HEADER("qcow2_header"),
        ACTIVE_L1("active L1 table"),
        ACTIVE_L2("active L2 table"),
        REFCOUNT_TABLE("refcount table"),
        REFCOUNT_BLOCK("refcount block"),
        SNAPSHOT_TABLE("snapshot table"),
        INACTIVE_L1("inactive L1 table"),
        BITMAP_DIRECTORY("bitmap directory");

        final String qemuName;

        Kind(String qemuName) {
            this.qemuName = qemuName;
        }
    }

    private record Range(long firstCluster, long lastCluster, Kind kind) {}

    // set at construction, never changed
    private final int clusterBits;
    private final List<Range> ranges = new ArrayList<>();
    private final long[] activeL2;
    private final long[] refblocks;

    Qcow2CheckOverlap(Qcow2CheckImage img, Qcow2CheckSnapshots.Table snapshots) {
        this.clusterBits = img.clusterBits;
        addRange(0, img.clusterSize, Kind.MAIN_HEADER);
        addRange(img.l1TableOffset, Integer.toUnsignedLong(img.l1Size) * 8, Kind.ACTIVE_L1);
        addRange(img.reftableOffset, img.storedReftableSize() * 8, Kind.REFCOUNT_TABLE);
        addRange(snapshots.offset(), snapshots.size(), Kind.SNAPSHOT_TABLE);
        for (Qcow2CheckSnapshots.Snapshot sn : snapshots.snapshots()) {
            addRange(sn.l1TableOffset(), sn.l1Size() * 8, Kind.INACTIVE_L1);
        }
        if (img.bitmaps != null) {
            addRange(img.bitmaps.directoryOffset(), img.bitmaps.directorySize(), Kind.BITMAP_DIRECTORY);
        }
        activeL2 = coveredClusters(img.l1Table, Qcow2CheckImage.L1E_OFFSET_MASK, img.clusterSize);
        refblocks = coveredClusters(img.reftable, Qcow2CheckImage.REFT_OFFSET_MASK, img.clusterSize);
    }

    /**
     * The first structure the write of {@code length} bytes at {@code offset} would overlap,
     * ignoring the kinds in {@code ignore}, or null when the write is safe.
     */
    Kind overlaps(long offset, long length, Kind... ignore) {
        if (length <= 0) {
            return null;
        }
        long first = offset >>> clusterBits;
        long last = (offset + length - 1) >>> clusterBits;
        List<Kind> ignored = Arrays.asList(ignore);
        for (Range r : ranges) {
            if (!ignored.contains(r.kind()) && r.firstCluster() <= last && first <= r.lastCluster()) {
                return r.kind();
            }
        }
        if (!ignored.contains(Kind.ACTIVE_L2) && anyIn(activeL2, first, last)) {
            return Kind.ACTIVE_L2;
        }
        if (!ignored.contains(Kind.REFCOUNT_BLOCK) && anyIn(refblocks, first, last)) {
            return Kind.REFCOUNT_BLOCK;
        }
        return null;
    }

    private void addRange(long offset, long length, Kind kind) {
        if (length <= 0 || offset < 0 || offset > Long.MAX_VALUE - length) {
            return;
        }
        ranges.add(new Range(offset >>> clusterBits, (offset + length - 1) >>> clusterBits, kind));
    }

    /**
     * Sorted numbers of the clusters that the one-cluster structures a table points to cover. An
     * unaligned structure covers two clusters, as QEMU's byte-range comparison finds.
     */
    private long[] coveredClusters(long[] table, long mask, int clusterSize) {
        long[] out = new long[table.length * 2];
        int n = 0;
        for (long e : table) {
            long off = e & mask;
            if (off > 0) {
                out[n++] = off >>> clusterBits;
                if ((off & (clusterSize - 1)) != 0) {
                    out[n++] = (off >>> clusterBits) + 1;
                }
            }
        }
        long[] sorted = Arrays.copyOf(out, n);
        Arrays.sort(sorted);
        return sorted;
    }

    private static boolean anyIn(long[] sorted, long first, long last) {
        int i = Arrays.binarySearch(sorted, first);
        if (i >= 0) {
            return true;
        }
        int ins = -i - 1;
        return ins < sorted.length && sorted[ins] <= last;
    }
}
