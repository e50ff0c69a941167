package dev.strata.block.qcow2;

import dev.strata.block.BlockNode;
import dev.strata.block.qcow2.ClusterMap.Type;
import java.io.IOException;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The zero writes and discards of a {@link Qcow2Driver}: whole clusters change by rewriting their
 * L2 entries by a rule (zero flag, unallocated), parts of clusters by writing zeros as data.
 *
 * <p>Concurrency: each rewrite holds the exclusive side of the driver's metadata lock from the
 * lookup through the L2 writes and the frees; the partial-cluster zeroing looks under the shared
 * side and writes through {@link Qcow2Writer}, which takes the lock as any write does.
 *
 * <p>Crash consistency: as in {@link Qcow2Driver}, the references the old entries held are dropped
 * only after the new entries are written; a table is made writable only when it would change.
 */
final class Qcow2ZeroDiscard {
    // set at open, never changed
    private final Qcow2Driver driver;
    private final Qcow2Writer writer;
    private final BlockNode backing;
    private final ClusterMap map;
    private final Refcounts refcounts;
    private final ReentrantReadWriteLock lock;
    private final int clusterBits;
    private final int clusterSize;
    private final int l2Entries;

    /** A rule that maps an L2 entry to its replacement. */
    @FunctionalInterface
    private interface EntryRule {
        long apply(long entry);
    }

    /** {@code driver} gives the current length and header, {@code writer} writes zeros as data. */
    Qcow2ZeroDiscard(
            Qcow2Driver driver,
            Qcow2Writer writer,
            BlockNode backing,
            ClusterMap map,
            Refcounts refcounts,
            ReentrantReadWriteLock lock,
            Qcow2Header header) {
        this.driver = driver;
        this.writer = writer;
        this.backing = backing;
        this.map = map;
        this.refcounts = refcounts;
        this.lock = lock;
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
        this.l2Entries = map.l2Entries();
    }

    void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        long end = offset + length;
        long start = roundUp(offset);
        long alignedEnd = end == driver.length() ? roundUp(end) : end & -(long) clusterSize;
        if (start >= alignedEnd) {
            zeroPartial(offset, end);
            return;
        }
        zeroPartial(offset, start);
        if (driver.header().version() < 3) {
            if (backing == null) {
                // v2 has no zero flag; without a backing file an unallocated cluster reads as zeros
                rewriteEntries(start, alignedEnd, e -> 0);
            } else {
                writeZeroData(start, alignedEnd);
            }
        } else {
            rewriteEntries(start, alignedEnd, e -> {
                Type type = ClusterMap.type(e);
                boolean unmap =
                        type == Type.COMPRESSED || (mayUnmap && (type == Type.NORMAL || type == Type.ZERO_ALLOC));
                return (unmap ? 0 : e) | ClusterMap.ZERO;
            });
        }
        if (alignedEnd < end) {
            zeroPartial(alignedEnd, end);
        }
    }

    /** Zeroes parts of clusters by writing zeros, skipping clusters that already read as zeros. */
    private void zeroPartial(long from, long to) throws IOException {
        long pos = from;
        while (pos < to) {
            long next = Math.min(to, roundUp(pos + 1));
            if (!readsAsZero(pos)) {
                writeZeroData(pos, next);
            }
            pos = next;
        }
    }

    private boolean readsAsZero(long pos) throws IOException {
        lock.readLock().lock();
        try {
            Type type = ClusterMap.type(map.entryFor(pos >>> clusterBits));
            return type == Type.ZERO_PLAIN
                    || type == Type.ZERO_ALLOC
                    || (type == Type.UNALLOCATED
                            && (backing == null || (pos & -(long) clusterSize) >= backing.length()));
        } finally {
            lock.readLock().unlock();
        }
    }

    private void writeZeroData(long from, long to) throws IOException {
        long pos = from;
        while (pos < to) {
            int n = (int) Math.min(Qcow2Reader.ZEROS.capacity(), to - pos);
            writer.write(pos, Qcow2Reader.ZEROS.duplicate().limit(n));
            pos += n;
        }
    }

    void discard(long offset, long length) throws IOException {
        long end = offset + length;
        long start = roundUp(offset);
        long alignedEnd = end == driver.length() ? roundUp(end) : end & -(long) clusterSize;
        if (start >= alignedEnd) {
            return;
        }
        boolean v3 = driver.header().version() >= 3;
        // as QEMU: a discarded cluster reads as zeros on v3 when that changes anything
        rewriteEntries(start, alignedEnd, e -> {
            Type type = ClusterMap.type(e);
            boolean allocated = type == Type.NORMAL || type == Type.ZERO_ALLOC || type == Type.COMPRESSED;
            if (backing != null || allocated) {
                return v3 ? ClusterMap.ZERO : 0;
            }
            return e;
        });
    }

    /** Drops the entries of clusters [from, to) and frees what they held (a shrink's discard). */
    void dropEntries(long from, long to) throws IOException {
        rewriteEntries(from, to, e -> 0);
    }

    /**
     * Replaces the entries of clusters [from, to) (cluster-aligned byte offsets) by a rule, then
     * frees what the old entries referenced and the new ones do not. Tables that would not change
     * are not allocated.
     */
    private void rewriteEntries(long from, long to, EntryRule rule) throws IOException {
        lock.writeLock().lock();
        try {
            long c = from >>> clusterBits;
            long endC = (to + clusterSize - 1) >>> clusterBits;
            while (c < endC) {
                int l1i = (int) (c >>> map.l2Bits());
                int idx = (int) (c & (l2Entries - 1));
                int count = (int) Math.min(l2Entries - idx, endC - c);
                byte[] t = map.l2(l1i);
                boolean changes = false;
                for (int i = 0; i < count && !changes; i++) {
                    long e = t == null ? 0 : ClusterMap.entry(t, idx + i);
                    changes = rule.apply(e) != e;
                }
                if (changes) {
                    t = map.writableL2(l1i, refcounts);
                    long[] old = new long[count];
                    int first = -1;
                    int last = -1;
                    for (int i = 0; i < count; i++) {
                        long e = ClusterMap.entry(t, idx + i);
                        long ne = rule.apply(e);
                        old[i] = e;
                        if (ne != e) {
                            ClusterMap.setEntry(t, idx + i, ne);
                            first = first < 0 ? i : first;
                            last = i;
                        } else {
                            old[i] = 0;
                        }
                    }
                    map.writeEntries(l1i, t, idx + first, idx + last + 1);
                    for (int i = first; i <= last; i++) {
                        long[] r = map.referencedRange(old[i]);
                        long ne = ClusterMap.entry(t, idx + i);
                        if (r != null && map.referencedRange(ne) == null) {
                            refcounts.free(r[0], r[1]);
                        }
                    }
                }
                c += count;
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    private long roundUp(long v) {
        return (v + clusterSize - 1) & -(long) clusterSize;
    }
}
