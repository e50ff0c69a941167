package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * Writes a new refcount structure (refcount blocks and table) from the refcounts the check
 * computed, then switches the header to it (QEMU's rebuild_refcount_structure).
 *
 * <p>Placement follows QEMU exactly (first fit in the computed table, each refcount block at or
 * after the first cluster it describes, the table after the blocks, repeated until the table stops
 * growing), so the image end offset after a repair matches qemu-img's.
 *
 * <p>Crash consistency: the new blocks and table go only into clusters nothing references, and
 * never onto a cluster the old refcount table points to (QEMU's overlap check refuses such writes
 * and gives up; Strata simply places the block elsewhere). All of them are synced before the
 * header's 12-byte refcount table pointer is rewritten in one sector and synced again. A crash
 * before that write leaves the old structure untouched; after it, the new one is complete. The old
 * structure's clusters are left as leaks, which the check then frees.
 */
final class Qcow2CheckRebuild {
    private static final int HEADER_REFTABLE_FIELDS = 48;

    // set at construction, never changed
    private final Qcow2CheckImage img;
    private final Qcow2CheckRefcounts counts;
    private final Qcow2CheckOverlap oldMetadata;
    private final long[] avoid;

    // the new refcount table, grown as refcount blocks are placed
    private long[] table = new long[0];

    private Qcow2CheckRebuild(Qcow2CheckImage img, Qcow2CheckRefcounts counts, Qcow2CheckOverlap oldMetadata) {
        this.img = img;
        this.counts = counts;
        this.oldMetadata = oldMetadata;
        this.avoid = oldRefblockClusters(img);
    }

    /**
     * Rebuilds the refcount structure of {@code img} from {@code counts}, which it updates with the
     * clusters it allocates. On failure counts a check error and throws with QEMU's message logged.
     */
    static void rebuild(
            Qcow2CheckImage img, Qcow2CheckRefcounts counts, Qcow2CheckTally res, Qcow2CheckOverlap oldMetadata)
            throws IOException {
        try {
            new Qcow2CheckRebuild(img, counts, oldMetadata).run();
        } catch (Failure f) {
            res.checkErrors++;
            img.log.error(f.getMessage() + ": " + Qcow2CheckResult.strerror(f.errno()));
            throw new BlockException(f.getMessage(), f.errno());
        }
    }

    private static final class Failure extends BlockException {
        private static final long serialVersionUID = 1L;

        Failure(String message, int errno) {
            super(message, errno);
        }
    }

    private void run() throws IOException {
        boolean grown = writeRefblocks(0, counts.size());
        long tableOffset;
        int tableClusters;
        do {
            long[] firstFree = {0};
            tableClusters = (int) img.sizeToClusters((long) table.length * 8);
            tableOffset = allocate(tableClusters, firstFree, "ERROR allocating reftable");
            long start = tableOffset >>> img.clusterBits;
            grown = writeRefblocks(start, start + tableClusters);
        } while (grown);

        ByteBuffer t = ByteBuffer.allocate(table.length * 8);
        for (long e : table) {
            t.putLong(e);
        }
        checkOverlap(tableOffset, t.capacity(), "ERROR writing reftable");
        try {
            img.write(tableOffset, t.array(), 0, t.capacity());
            // the new blocks and table must be on disk before the header points at them
            img.sync();
        } catch (IOException e) {
            throw new Failure("ERROR writing reftable", Qcow2Check.errno(e));
        }
        byte[] pointer = ByteBuffer.allocate(12)
                .putLong(tableOffset)
                .putInt(tableClusters)
                .array();
        try {
            img.write(HEADER_REFTABLE_FIELDS, pointer, 0, pointer.length);
            img.sync();
        } catch (IOException e) {
            throw new Failure("ERROR setting reftable", Qcow2Check.errno(e));
        }
        img.installReftable(
                tableOffset, table.clone(), table.length, img.header.withRefcountTable(tableOffset, tableClusters));
    }

    /**
     * Places and writes the refcount blocks for every counted cluster in {@code [first, end)}
     * (QEMU's rebuild_refcounts_write_refblocks). A block already placed by an earlier round is
     * rewritten in place. Returns whether the table had to grow.
     */
    private boolean writeRefblocks(long first, long end) throws IOException {
        long[] firstFree = {0};
        boolean grown = false;
        long perBlock = counts.entriesPerBlock();
        int blockBits = counts.blockBits();
        for (long cluster = first; cluster < end; cluster++) {
            long index = cluster >>> blockBits;
            long blockStart = index << blockBits;
            if (counts.blockIsEmpty(index)) {
                cluster = blockStart + perBlock - 1;
                continue;
            }
            if (counts.get(cluster) == 0) {
                continue;
            }
            long blockOffset;
            if (index < table.length && table[(int) index] != 0) {
                blockOffset = table[(int) index];
            } else {
                // never place a block inside a range of blocks already written
                firstFree[0] = Math.max(firstFree[0], blockStart);
                blockOffset = allocate(1, firstFree, "ERROR allocating refblock");
                long blockCluster = blockOffset >>> img.clusterBits;
                if (blockCluster >= end) {
                    // the block holding this block's own refcount must be written too
                    end = blockCluster + 1;
                }
                if (index >= table.length) {
                    long entries = ((index + 1) * 8 + img.clusterSize - 1) / img.clusterSize * img.clusterSize / 8;
                    if (entries > Integer.MAX_VALUE - 8) {
                        throw new Failure("ERROR allocating reftable memory", Qcow2Check.ENOMEM);
                    }
                    table = Arrays.copyOf(table, (int) entries);
                    grown = true;
                }
                table[(int) index] = blockOffset;
            }
            checkOverlap(blockOffset, img.clusterSize, "ERROR writing refblock");
            byte[] block = counts.block(index);
            try {
                img.write(blockOffset, block, 0, block.length);
            } catch (IOException e) {
                throw new Failure("ERROR writing refblock", Qcow2Check.errno(e));
            }
            cluster = blockStart + perBlock - 1;
        }
        return grown;
    }

    /**
     * Allocates {@code n} contiguous clusters in the computed table, first fit from {@code
     * firstFree[0]}, growing the table at its end when no gap is big enough (QEMU's
     * alloc_clusters_imrt). {@code firstFree[0]} is left at the first gap seen.
     */
    private long allocate(long n, long[] firstFree, String what) throws IOException {
        long cluster = firstFree[0];
        boolean firstGap = true;
        long contiguous = 0;
        for (; cluster < counts.size() && contiguous < n; cluster++) {
            if (isFree(cluster)) {
                contiguous++;
                if (firstGap) {
                    firstFree[0] = cluster;
                    firstGap = false;
                }
            } else {
                contiguous = 0;
            }
        }
        try {
            if (contiguous < n) {
                counts.ensureSize(cluster + n - contiguous);
            }
            cluster -= contiguous;
            for (long i = 0; i < n; i++) {
                counts.set(cluster + i, 1);
            }
        } catch (Qcow2CheckRefcounts.BudgetExceeded e) {
            throw new Failure(what, Qcow2Check.ENOMEM);
        }
        return cluster << img.clusterBits;
    }

    private boolean isFree(long cluster) {
        return counts.get(cluster) == 0 && Arrays.binarySearch(avoid, cluster) < 0;
    }

    private void checkOverlap(long offset, long length, String what) throws Failure {
        Qcow2CheckOverlap.Kind hit = oldMetadata.overlaps(offset, length);
        if (hit != null) {
            img.signalCorruption("Preventing invalid write on metadata (overlaps with " + hit.qemuName + ")");
            throw new Failure(what, BlockException.EIO);
        }
    }

    /** Clusters the old refcount table points at, valid or not: a crash before the switch must find them intact. */
    private static long[] oldRefblockClusters(Qcow2CheckImage img) {
        long[] out = new long[img.reftable.length * 2];
        int n = 0;
        for (long e : img.reftable) {
            long off = e & Qcow2CheckImage.REFT_OFFSET_MASK;
            if (off > 0) {
                out[n++] = off >>> img.clusterBits;
                if ((off & (img.clusterSize - 1)) != 0) {
                    out[n++] = (off >>> img.clusterBits) + 1;
                }
            }
        }
        long[] sorted = Arrays.copyOf(out, n);
        Arrays.sort(sorted);
        return sorted;
    }
}
