package dev.strata.backup;

import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import dev.strata.block.dirty.BitmapException;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.dirty.DirtyBitmaps;
import dev.strata.job.JobException;
import dev.strata.job.JobRegistry;
import dev.strata.job.JobTxn;
import java.io.IOException;

/**
 * Creates backup jobs with QEMU's checks in QEMU's order (do_backup_common, backup_job_create; the
 * messages iotest 257 pins), and fixes their point in time.
 *
 * <p>The caller drains the source for the duration of {@link #create} (a transaction drains it for
 * longer), so the clusters to copy, the bitmap's successor and the copy-before-write hook all
 * start at the same instant. A refused request changes nothing: the successor made before a later
 * check fails is merged back.
 */
public final class Backup {
    /** The smallest cluster a backup copies (QEMU's BACKUP_CLUSTER_SIZE_DEFAULT). */
    static final long MIN_CLUSTER = 64 * 1024;

    private Backup() {}

    /** Validates, freezes the bitmap, registers the job (state created) and attaches it. */
    public static BackupJob create(JobRegistry jobs, JobTxn txn, BackupRequest r) throws BackupException {
        SyncMode sync = r.sync();
        BitmapMode mode = r.bitmapMode();
        if ((sync == SyncMode.BITMAP || sync == SyncMode.INCREMENTAL) && r.bitmap() == null) {
            throw new BackupException("must provide a valid bitmap name for '" + name(sync) + "' sync mode");
        }
        if (sync == SyncMode.INCREMENTAL) {
            if (mode != null && mode != BitmapMode.ON_SUCCESS) {
                throw new BackupException("Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
            }
            sync = SyncMode.BITMAP;
            mode = BitmapMode.ON_SUCCESS;
        }
        BlockNode source = r.source();
        DirtyBitmap bitmap = null;
        if (r.bitmap() != null) {
            bitmap = source.bitmaps().find(r.bitmap()).orElse(null);
            if (bitmap == null) {
                throw new BackupException("Bitmap '" + r.bitmap() + "' could not be found");
            }
            if (mode == null) {
                throw new BackupException("Bitmap sync mode must be given when providing a bitmap");
            }
            check(bitmap, DirtyBitmaps.Check.ALLOW_RO);
            if (sync == SyncMode.NONE) {
                throw new BackupException("sync mode 'none' does not produce meaningful bitmap outputs");
            }
            if (mode == BitmapMode.NEVER && sync != SyncMode.BITMAP) {
                throw new BackupException(
                        "Bitmap sync mode 'never' has no meaningful effect when combined with sync mode '" + name(sync)
                                + "'");
            }
        }
        if (r.bitmap() == null && mode != null) {
            throw new BackupException("Cannot specify bitmap sync mode without a bitmap");
        }
        BlockNode target = r.target();
        if (source == target) {
            throw new BackupException("Source and target cannot be the same");
        }
        if (r.compress() && !target.jobIo().canCompress()) {
            // QEMU names the target's device, which a node without one does not have
            throw new BackupException("Compression is not supported for this drive ");
        }
        blocked(source);
        blocked(target);
        if (bitmap != null) {
            if (mode != BitmapMode.NEVER) {
                check(bitmap, DirtyBitmaps.Check.DEFAULT);
            }
            try {
                source.bitmaps().createSuccessor(bitmap);
            } catch (BitmapException e) {
                throw new BackupException(e.getMessage());
            }
        }
        try {
            return build(jobs, txn, r, sync, bitmap, mode);
        } catch (BackupException | RuntimeException e) {
            if (bitmap != null) {
                source.bitmaps().reclaim(bitmap);
            }
            throw e;
        }
    }

    private static BackupJob build(
            JobRegistry jobs, JobTxn txn, BackupRequest r, SyncMode sync, DirtyBitmap bitmap, BitmapMode mode)
            throws BackupException {
        BlockNode source = r.source();
        BlockNode target = r.target();
        long length;
        long targetLength;
        try {
            length = source.length();
        } catch (IOException e) {
            throw new BackupException("Unable to get length for '" + source.nodeName() + "': " + e.getMessage());
        }
        try {
            targetLength = target.length();
        } catch (IOException e) {
            throw new BackupException("Unable to get length for '" + target.nodeName() + "': " + e.getMessage());
        }
        if (length != targetLength) {
            throw new BackupException("Source and target image have different sizes");
        }
        long cluster = Math.max(MIN_CLUSTER, target.clusterSize());
        try {
            jobs.checkId(r.jobId());
        } catch (JobException e) {
            throw new BackupException(e.getMessage());
        }
        BackupJob job = new BackupJob(jobs, r, sync, bitmap, mode, length, cluster);
        BlockCopy copy = job.blockCopy();
        try {
            initialise(copy, sync, bitmap, source, length);
        } catch (IOException e) {
            throw new BackupException(
                    "Could not read the allocation of '" + source.nodeName() + "': " + e.getMessage());
        }
        job.setTotal(copy.bytesToCopy());
        try {
            jobs.add(job, txn);
        } catch (JobException e) {
            throw new BackupException(e.getMessage());
        }
        try {
            jobs.setSpeed(job, r.speed());
        } catch (JobException e) {
            // as QEMU: the job existed for a moment (created, then null)
            jobs.earlyFail(job);
            throw new BackupException(e.getMessage());
        }
        job.attach();
        return job;
    }

    /** What to copy: the bitmap's dirty clusters, or everything ("top": what the top layer holds). */
    private static void initialise(BlockCopy copy, SyncMode sync, DirtyBitmap bitmap, BlockNode source, long length)
            throws IOException {
        if (sync == SyncMode.BITMAP) {
            for (long off = bitmap.nextDirty(0); off >= 0 && off < length; ) {
                long end = bitmap.nextClean(off);
                copy.markToCopy(off, end - off);
                off = end >= length ? -1 : bitmap.nextDirty(end);
            }
            return;
        }
        copy.markToCopy(0, length);
        if (sync == SyncMode.TOP && source.backing().isPresent()) {
            for (Extent e : source.jobIo().blockStatus(0, length)) {
                if (e.depth() > 0 || e.kind() == Extent.Kind.UNALLOCATED) {
                    copy.skip(e.offset(), e.length());
                }
            }
        }
    }

    private static void check(DirtyBitmap b, DirtyBitmaps.Check check) throws BackupException {
        try {
            DirtyBitmaps.check(b, check);
        } catch (BitmapException e) {
            throw new BackupException(e.getMessage());
        }
    }

    private static void blocked(BlockNode n) throws BackupException {
        var reason = n.blocker();
        if (reason.isPresent()) {
            throw new BackupException("Node '" + n.nodeName() + "' is busy: " + reason.get());
        }
    }

    private static String name(SyncMode s) {
        return s.name().toLowerCase(java.util.Locale.ROOT);
    }
}
