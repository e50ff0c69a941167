package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.util.List;

/**
 * One check of an opened image, optionally repairing (QEMU's qcow2_co_check_locked with
 * qcow2_check_refcounts): read the snapshot table, compute the refcounts, compare them with the
 * stored ones, repair what the mode allows, check the COPIED flags, and finally mark a repaired
 * image clean and consistent.
 *
 * <p>The order of the steps and the way the counters are saved and restored around the repairs
 * follow QEMU, because the numbers qemu-img reports depend on them.
 *
 * <p>Crash consistency: every repair either raises a refcount, lowers one to the number of
 * references that really exist, or sets/clears a COPIED flag to agree with a refcount already on
 * disk; the refcount changes are synced before any COPIED flag is written. A crash at any point
 * therefore leaves at worst leaked clusters. The refcount structure rebuild has its own ordering
 * ({@link Qcow2CheckRebuild}).
 */
final class Qcow2CheckPass {
    // set at construction, never changed
    private final Qcow2CheckImage img;
    private final Qcow2Check.RepairMode fix;
    private final long memoryBudget;
    private final List<Qcow2CheckBitmaps.Bitmap> bitmaps;

    private Qcow2CheckPass(
            Qcow2CheckImage img, Qcow2Check.RepairMode fix, long memoryBudget, List<Qcow2CheckBitmaps.Bitmap> bitmaps) {
        this.img = img;
        this.fix = fix;
        this.memoryBudget = memoryBudget;
        this.bitmaps = bitmaps;
    }

    /** Runs one pass; throws when the check cannot complete (qemu-img then prints "Check failed"). */
    static Qcow2CheckTally run(
            Qcow2CheckImage img, Qcow2Check.RepairMode fix, long memoryBudget, List<Qcow2CheckBitmaps.Bitmap> bitmaps)
            throws IOException {
        if (fix != Qcow2Check.RepairMode.NONE) {
            updateHeaderForWriting(img);
        }
        return new Qcow2CheckPass(img, fix, memoryBudget, bitmaps).check();
    }

    /**
     * What QEMU's open does to a header when it opens an image writable: unknown autoclear bits
     * are cleared, and a bitmaps extension whose autoclear bit was cleared by an older program is
     * dropped (its clusters then show up as leaks).
     */
    private static void updateHeaderForWriting(Qcow2CheckImage img) throws IOException {
        Qcow2Header h = img.header;
        long autoclear = h.autoclearFeatures() & Qcow2CheckImage.AUTOCLEAR_MASK;
        if (autoclear == h.autoclearFeatures() && !img.staleBitmapsExtension) {
            return;
        }
        Qcow2Header updated = h.withAutoclearFeatures(autoclear);
        if (img.staleBitmapsExtension) {
            updated = updated.withExtensions(h.extensions().stream()
                    .filter(e -> e.type() != Qcow2Header.EXT_BITMAPS)
                    .toList());
            img.staleBitmapsExtension = false;
        }
        byte[] encoded = updated.encode();
        byte[] cluster = new byte[img.clusterSize];
        System.arraycopy(encoded, 0, cluster, 0, encoded.length);
        img.write(0, cluster, 0, cluster.length);
        img.sync();
        img.header = updated;
    }

    private Qcow2CheckTally check() throws IOException {
        Qcow2CheckTally result = new Qcow2CheckTally();
        Qcow2CheckTally snapshotRes = new Qcow2CheckTally();
        Qcow2CheckSnapshots.Table snapshots;
        try {
            snapshots = Qcow2CheckSnapshots.read(img, snapshotRes, fix);
        } catch (IOException e) {
            if (snapshotRes.checkErrors == 0) {
                img.log.message("ERROR failed to read the snapshot table pointer from the image header: "
                        + Qcow2CheckResult.strerror(Qcow2Check.errno(e)));
            }
            throw e;
        }
        Qcow2CheckTally refcountRes = new Qcow2CheckTally();
        checkRefcounts(refcountRes, snapshots);
        result.add(refcountRes, true);
        result.add(snapshotRes, false);
        if (fix != Qcow2Check.RepairMode.NONE && result.checkErrors == 0 && result.corruptions == 0) {
            markCleanAndConsistent();
        }
        return result;
    }

    /** QEMU's qcow2_check_refcounts. */
    private void checkRefcounts(Qcow2CheckTally res, Qcow2CheckSnapshots.Table snapshots) throws IOException {
        long nbClusters = img.sizeToClusters(img.fileLength());
        if (nbClusters > Integer.MAX_VALUE) {
            res.checkErrors++;
            throw new BlockException("File too large", BlockException.EFBIG);
        }
        res.totalClusters = img.sizeToClusters(img.virtualSize / 512 * 512);
        Qcow2CheckRefcounts counts = new Qcow2CheckRefcounts(img.clusterBits, img.refcountOrder, memoryBudget);
        try {
            counts.ensureSize(nbClusters);
        } catch (Qcow2CheckRefcounts.BudgetExceeded e) {
            res.checkErrors++;
            throw new BlockException("Cannot allocate memory", Qcow2Check.ENOMEM);
        }
        Qcow2CheckWalk walk = new Qcow2CheckWalk(img, counts, res, fix, snapshots, bitmaps);
        walk.calculate();

        // with a repair that needs no rebuild, this comparison is only a preview: it is redone
        Qcow2CheckTally preCompare = res.copy();
        Compare cmp = new Compare(counts, res, walk);
        long highest = cmp.run(Qcow2Check.RepairMode.NONE);

        if (walk.rebuild() && fix == Qcow2Check.RepairMode.ALL) {
            Qcow2CheckTally old = res.copy();
            img.log.message("Rebuilding refcount structure");
            Qcow2CheckRebuild.rebuild(img, counts, res, new Qcow2CheckOverlap(img, snapshots));
            res.corruptions = 0;
            res.leaks = 0;
            // the old structure was swapped for a new one, so every reference is counted again
            counts.clear();
            Qcow2CheckWalk recount =
                    new Qcow2CheckWalk(img, counts, res, Qcow2Check.RepairMode.NONE, snapshots, bitmaps);
            recount.calculate();
            // the old structure is now leaked: free it; leaks left after that came from the rebuild
            Qcow2CheckTally saved = res.copy();
            res.restore(new Qcow2CheckTally());
            Compare free = new Compare(counts, res, recount);
            highest = free.run(Qcow2Check.RepairMode.LEAKS);
            if (recount.rebuild()) {
                img.log.message("ERROR rebuilt refcount structure is still broken");
            }
            long freshLeaks = res.leaks;
            res.restore(saved);
            if (res.corruptions < old.corruptions) {
                res.corruptionsFixed += old.corruptions - res.corruptions;
            }
            if (res.leaks < old.leaks) {
                res.leaksFixed += old.leaks - res.leaks;
            }
            res.leaks += freshLeaks;
        } else if (fix != Qcow2Check.RepairMode.NONE) {
            if (walk.rebuild()) {
                img.log.message("ERROR need to rebuild refcount structures");
                res.checkErrors++;
                throw new BlockException("Input/output error", BlockException.EIO);
            }
            if (res.leaks != 0 || res.corruptions != 0) {
                res.restore(preCompare);
                highest = cmp.run(fix);
            }
        }
        if (fix != Qcow2Check.RepairMode.NONE) {
            img.flushRefcounts();
        }
        checkOflagCopied(res, snapshots);
        res.imageEndOffset = (highest + 1) << img.clusterBits;
    }

    /** Compares computed with stored refcounts and fixes what the mode allows (QEMU's compare_refcounts). */
    private final class Compare {
        private final Qcow2CheckRefcounts counts;
        private final Qcow2CheckTally res;
        private final Qcow2CheckWalk walk;

        Compare(Qcow2CheckRefcounts counts, Qcow2CheckTally res, Qcow2CheckWalk walk) {
            this.counts = counts;
            this.res = res;
            this.walk = walk;
        }

        /** Returns the highest cluster that is counted or stored as used. */
        long run(Qcow2Check.RepairMode mode) {
            long highest = 0;
            long n = counts.size();
            int blockBits = counts.blockBits();
            for (long i = 0; i < n; i++) {
                long block = i >>> blockBits;
                if (counts.blockIsEmpty(block) && storedBlockAbsent(block)) {
                    // nothing counted and nothing stored: skip the whole refcount block
                    i = ((block + 1) << blockBits) - 1;
                    continue;
                }
                long stored;
                try {
                    stored = img.storedRefcount(i);
                } catch (IOException e) {
                    img.log.message("Can't get refcount for cluster " + i + ": "
                            + Qcow2CheckResult.strerror(Qcow2Check.errno(e)));
                    res.checkErrors++;
                    continue;
                }
                long computed = counts.get(i);
                if (stored != 0 || computed != 0) {
                    highest = i;
                }
                if (stored == computed) {
                    continue;
                }
                boolean low = Long.compareUnsigned(stored, computed) < 0;
                boolean fixLeak = false;
                boolean fixError = false;
                if (stored == 0) {
                    walk.markRebuild();
                } else if (!low && mode != Qcow2Check.RepairMode.NONE) {
                    fixLeak = true;
                } else if (low && mode == Qcow2Check.RepairMode.ALL) {
                    fixError = true;
                }
                img.log.message((fixLeak || fixError ? "Repairing" : low ? "ERROR" : "Leaked") + " cluster " + i
                        + " refcount=" + Long.toUnsignedString(stored) + " reference="
                        + Long.toUnsignedString(computed));
                if (fixLeak || fixError) {
                    try {
                        img.setStoredRefcount(i, computed);
                        if (fixLeak) {
                            res.leaksFixed++;
                        } else {
                            res.corruptionsFixed++;
                        }
                        continue;
                    } catch (IOException e) {
                        // counted below as not fixed
                    }
                }
                if (low) {
                    res.corruptions++;
                } else {
                    res.leaks++;
                }
            }
            return highest;
        }

        private boolean storedBlockAbsent(long block) {
            return block >= img.storedReftableSize()
                    || (img.reftableEntry(block) & Qcow2CheckImage.REFT_OFFSET_MASK) == 0;
        }
    }

    /**
     * Checks that exactly the L1 and L2 entries whose cluster has refcount 1 carry the COPIED flag
     * (QEMU's check_oflag_copied). Repairs always with {@code -r all}; with {@code -r leaks} only
     * when the refcounts are now known to be right.
     */
    private void checkOflagCopied(Qcow2CheckTally res, Qcow2CheckSnapshots.Table snapshots) throws IOException {
        boolean repair = switch (fix) {
            case ALL -> true;
            case LEAKS -> res.checkErrors == 0 && res.corruptions == 0 && res.leaks == 0;
            case NONE -> false;
        };
        Qcow2CheckOverlap overlap = repair ? new Qcow2CheckOverlap(img, snapshots) : null;
        byte[] l2 = new byte[img.clusterSize];
        java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(l2);
        for (int i = 0; i < img.l1Table.length; i++) {
            long l1Entry = img.l1Table[i];
            long l2Offset = l1Entry & Qcow2CheckImage.L1E_OFFSET_MASK;
            if (l2Offset == 0) {
                continue;
            }
            long refcount;
            try {
                refcount = img.storedRefcount(l2Offset >>> img.clusterBits);
            } catch (IOException e) {
                continue;
            }
            boolean copied = (l1Entry & Qcow2CheckImage.OFLAG_COPIED) != 0;
            if ((refcount == 1) != copied) {
                res.corruptions++;
                img.log.message((repair ? "Repairing" : "ERROR") + " OFLAG_COPIED L2 cluster: l1_index=" + i
                        + " l1_entry=" + Long.toHexString(l1Entry) + " refcount=" + Long.toUnsignedString(refcount));
                if (repair) {
                    long fixed = refcount == 1
                            ? l1Entry | Qcow2CheckImage.OFLAG_COPIED
                            : l1Entry & ~Qcow2CheckImage.OFLAG_COPIED;
                    long at = img.l1TableOffset + (long) i * 8;
                    if (overlap.overlaps(at, 8, Qcow2CheckOverlap.Kind.ACTIVE_L1) != null) {
                        res.checkErrors++;
                        throw new BlockException("Input/output error", BlockException.EIO);
                    }
                    try {
                        img.writeLong(at, fixed);
                    } catch (IOException e) {
                        res.checkErrors++;
                        throw e;
                    }
                    img.l1Table[i] = fixed;
                    res.corruptions--;
                    res.corruptionsFixed++;
                }
            }

            if (l2Offset >= img.fileLength() && l2Offset <= Qcow2CheckImage.MAX_REQUEST_END - img.clusterSize) {
                // a table wholly past the end of the file reads as zeros: no entry to check
                continue;
            }
            b.clear();
            try {
                img.read(l2Offset, b);
            } catch (IOException e) {
                img.log.message("ERROR: Could not read L2 table: " + Qcow2CheckResult.strerror(Qcow2Check.errno(e)));
                res.checkErrors++;
                throw e;
            }
            int dirty = 0;
            for (int j = 0; j < img.l2Entries; j++) {
                int pos = j * img.l2EntryBytes;
                long entry = b.getLong(pos);
                Qcow2CheckImage.ClusterType type = img.clusterType(entry);
                if (type != Qcow2CheckImage.ClusterType.NORMAL && type != Qcow2CheckImage.ClusterType.ZERO_ALLOC) {
                    continue;
                }
                long dataRefcount;
                if (img.hasDataFile) {
                    dataRefcount = 1;
                } else {
                    try {
                        dataRefcount =
                                img.storedRefcount((entry & Qcow2CheckImage.L2E_OFFSET_MASK) >>> img.clusterBits);
                    } catch (IOException e) {
                        continue;
                    }
                }
                if ((dataRefcount == 1) != ((entry & Qcow2CheckImage.OFLAG_COPIED) != 0)) {
                    res.corruptions++;
                    img.log.message((repair ? "Repairing" : "ERROR") + " OFLAG_COPIED data cluster: l2_entry="
                            + Long.toHexString(entry) + " refcount=" + Long.toUnsignedString(dataRefcount));
                    if (repair) {
                        b.putLong(
                                pos,
                                dataRefcount == 1
                                        ? entry | Qcow2CheckImage.OFLAG_COPIED
                                        : entry & ~Qcow2CheckImage.OFLAG_COPIED);
                        dirty++;
                    }
                }
            }
            if (dirty > 0) {
                Qcow2CheckOverlap.Kind hit =
                        overlap.overlaps(l2Offset, img.clusterSize, Qcow2CheckOverlap.Kind.ACTIVE_L2);
                if (hit == null && (l2Offset & (img.clusterSize - 1)) != 0) {
                    // QEMU writes an unaligned "L2 table" where it lies; Strata does not write over
                    // whatever the misaligned pointer hits
                    hit = Qcow2CheckOverlap.Kind.ACTIVE_L2;
                }
                if (hit != null) {
                    img.signalCorruption("Preventing invalid write on metadata (overlaps with " + hit.qemuName + ")");
                    img.log.message("ERROR: Could not write L2 table; metadata overlap check failed: "
                            + Qcow2CheckResult.strerror(BlockException.EIO));
                    res.checkErrors++;
                    throw new BlockException("Input/output error", BlockException.EIO);
                }
                try {
                    img.write(l2Offset, l2, 0, l2.length);
                } catch (IOException e) {
                    img.log.message(
                            "ERROR: Could not write L2 table: " + Qcow2CheckResult.strerror(Qcow2Check.errno(e)));
                    res.checkErrors++;
                    throw e;
                }
                res.corruptions -= dirty;
                res.corruptionsFixed += dirty;
            }
        }
        if (repair) {
            img.sync();
        }
    }

    /** Clears the dirty and corrupt bits of a repaired image (QEMU's qcow2_mark_clean and mark_consistent). */
    private void markCleanAndConsistent() throws IOException {
        long bits = img.header.incompatibleFeatures();
        long cleared = bits & ~(Qcow2Header.INCOMPAT_DIRTY | Qcow2Header.INCOMPAT_CORRUPT);
        if (cleared == bits || img.version < 3) {
            return;
        }
        img.sync();
        img.writeLong(72, cleared);
        img.sync();
        img.header = img.header.withIncompatibleFeatures(cleared);
    }
}
