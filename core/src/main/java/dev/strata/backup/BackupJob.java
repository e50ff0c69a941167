package dev.strata.backup;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.HostCopy;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.job.Job;
import dev.strata.job.JobListener.ErrorAction;
import dev.strata.job.JobRegistry;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * A backup job: copies the source as it was when the job was created to the target, while the
 * guest keeps writing (QEMU's backup job with its copy-before-write filter).
 *
 * <p>Invariants (docs/architecture.md, invariants 3 and 4): the job is created with the source
 * drained; in that instant the clusters to copy are fixed, the user's bitmap (if any) is frozen
 * with a successor that records every later write, and the copy-before-write hook is installed, so
 * every later guest write first saves the old contents of clusters not yet copied. On success the
 * bitmap is handled per bitmap-mode (on-success: the successor takes its place); on failure or
 * cancel the successor is merged back, so the bitmap is as if the job never ran plus every write
 * since.
 *
 * <p>Concurrency: {@link #run} runs on the job's virtual thread and copies through a single reused
 * buffer of {@link #CHUNK} bytes; copy-before-write runs on the guest's writing thread; the two
 * meet only in {@link BlockCopy}'s claims. Commit, abort and clean run under the job registry's
 * lock after the work has ended. Clean detaches copy-before-write and waits for guest writes
 * inside it, so none can be half way through a copy to a target that is about to be closed; it
 * does not drain (a drain there could wait on a job read held back by a transaction's drain
 * while the transaction waits for the job lock).
 */
public final class BackupJob extends Job {
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(BackupJob.class);

    /** Largest piece copied at once: big enough for sequential throughput, small enough to pause. */
    static final int CHUNK = 4 << 20;

    /** The wait before retrying a copy whose error the policy ignores. */
    static final long IGNORE_RETRY_NANOS = 10_000_000L;

    /**
     * Copiers working side by side when no speed is set: two when copies go through memory (one's
     * read overlaps the other's write); one with copy offload, where a copy is a single kernel call
     * under the target's lock and a second copier only adds hand-offs (measured: no gain).
     */
    static final int WORKERS = Integer.getInteger("strata.backup.workers", HostCopy.ENABLED ? 1 : 2);

    /** The piece copied at once when a speed is set (QEMU's block-copy chunk). */
    static final int RATE_LIMITED_CHUNK = 1 << 20;

    /**
     * Every this many bytes copied, the target's writeback is started, so the disk writes overlap
     * the copying and the flush at the end (which makes the backup durable before it reports
     * success) waits for little; 0 ({@code -Dstrata.backup.writeback=0}) leaves it to that flush.
     * A full backup starts it once per {@link #CHUNK} whatever this is; an incremental one, whose
     * runs are often single clusters, every 8 of them. Measured on 328 scattered 64 KiB clusters
     * (copy and final flush): 12.5 ms every 4 MiB, 9.5-10 ms every 256-512 KiB, 12 ms every
     * cluster.
     */
    static final long WRITEBACK_EVERY = Long.getLong("strata.backup.writeback", 512L << 10);

    /**
     * Whether the target's qcow2 metadata waits in memory until the job's final flush
     * ({@link dev.strata.block.BlockDriver#setMetadataWriteback});
     * {@code -Dstrata.backup.metadata-writeback=false} keeps it write-through.
     */
    static final boolean METADATA_WRITEBACK = !"false".equals(System.getProperty("strata.backup.metadata-writeback"));

    // set at creation, never changed
    private final BlockNode source;
    private final BlockNode target;
    private final SyncMode sync;
    private final DirtyBitmap syncBitmap;
    private final BitmapMode bitmapMode;
    private final OnError onSourceError;
    private final OnError onTargetError;
    private final BlockCopy copy;
    private final Runnable onClean;
    private final dev.strata.block.BeforeWrite hook;
    /** discard-source: each run copied is discarded on the source. */
    private final boolean discardSource;

    /** Bytes copied since the target's writeback was last started. */
    private final AtomicLong unsynced = new AtomicLong();

    BackupJob(
            JobRegistry registry,
            BackupRequest r,
            SyncMode sync,
            DirtyBitmap syncBitmap,
            BitmapMode mode,
            long length,
            long clusterSize) {
        super(registry, r.jobId(), "backup", r.autoFinalize(), r.autoDismiss());
        this.source = r.source();
        this.target = r.target();
        this.sync = sync;
        this.syncBitmap = syncBitmap;
        this.bitmapMode = mode;
        this.onSourceError = r.onSourceError();
        this.onTargetError = r.onTargetError();
        this.onClean = r.onClean();
        this.discardSource = r.discardSource();
        this.copy = new BlockCopy(source, target, length, clusterSize, r.compress(), this::addProgress);
        this.hook = (node, offset, len) -> copy.beforeGuestWrite(offset, len);
    }

    BlockCopy blockCopy() {
        return copy;
    }

    public BlockNode source() {
        return source;
    }

    public BlockNode target() {
        return target;
    }

    /** The user's bitmap this job froze, or null. */
    public DirtyBitmap syncBitmap() {
        return syncBitmap;
    }

    /**
     * Starts copy-before-write and marks the nodes as used (the source is drained by the caller):
     * the target is QEMU-busy (no other job, no blockdev-del); the source may serve other backups.
     */
    void attach() {
        source.addBeforeWrite(hook);
        target.addBlocker(BLOCKER);
        if (METADATA_WRITEBACK) {
            try {
                // the target counts only once the job has flushed it: its metadata may wait
                target.jobIo().setMetadataWriteback(true);
            } catch (IOException e) {
                // turning it on writes nothing; should a driver refuse, the target stays write-through
            }
        }
    }

    static final String BLOCKER = "block device is in use by block job: backup";

    @Override
    protected void run() throws JobFailure {
        if (sync == SyncMode.NONE) {
            // only copy-before-write copies; the job lasts until it is cancelled
            while (!pausePoint()) {
                sleep(1_000_000_000L);
            }
            return;
        }
        ByteBuffer[] bufs = new ByteBuffer[WORKERS];
        try {
            for (int i = 0; i < WORKERS; i++) {
                bufs[i] = BlockCopy.BUFFERS.take(CHUNK);
            }
            if (copyAll(bufs)) {
                return;
            }
        } finally {
            for (ByteBuffer b : bufs) {
                if (b != null) {
                    BlockCopy.BUFFERS.give(b);
                }
            }
        }
        try {
            target.jobIo().setMetadataWriteback(false);
            target.flush();
        } catch (IOException e) {
            CopyFailure f = new CopyFailure(false, e);
            ioError(false, ErrorAction.REPORT, f.errno() == BlockException.ENOSPC);
            throw new JobFailure(f.getMessage());
        }
    }

    /** Copies until everything is copied; returns whether the job was cancelled meanwhile. */
    private boolean copyAll(ByteBuffer[] bufs) throws JobFailure {
        long pos = 0;
        long next = System.nanoTime();
        long lastSpeed = 0;
        while (true) {
            if (pausePoint()) {
                return true;
            }
            long speed = currentSpeed();
            if (speed == 0) {
                lastSpeed = 0;
                CopyFailure f = burst(bufs);
                if (f != null) {
                    if (failed(f)) {
                        return true;
                    }
                    continue;
                }
                if (copy.done()) {
                    return false;
                }
                if (!stopRequested()) {
                    // what is left is being copied by guest writes' copy-before-write
                    copy.awaitIdle();
                }
                continue;
            }
            if (speed != lastSpeed) {
                next = System.nanoTime();
                lastSpeed = speed;
            }
            // rate-limited, QEMU copies 1 MiB at a time and then waits its turn; so does Strata
            BlockCopy.Run r = copy.claimNext(pos, Math.max(copy.clusterSize(), RATE_LIMITED_CHUNK));
            if (r == null) {
                if (copy.done()) {
                    return false;
                }
                copy.awaitIdle();
                pos = 0;
                continue;
            }
            CopyFailure f = copyRun(r, bufs[0]);
            if (f != null) {
                pos = r.start();
                if (failed(f)) {
                    return true;
                }
                continue;
            }
            pos = r.end();
            next += r.length() * 1_000_000_000L / speed;
            long delay = next - System.nanoTime();
            if (delay > 0 && sleep(delay)) {
                return true;
            }
        }
    }

    /**
     * Applies the error policy to a failed copy: throws for {@code report}; returns whether the
     * job was cancelled while it waited to retry ({@code ignore}); {@code stop} pauses the job at
     * its next pause point.
     */
    private boolean failed(CopyFailure f) throws JobFailure {
        ErrorAction action = decide(f);
        ioError(f.read(), action, f.errno() == BlockException.ENOSPC);
        if (action == ErrorAction.REPORT) {
            throw new JobFailure(f.getMessage());
        }
        // QEMU retries at once; a short wait keeps a lasting error from spinning a core and
        // flooding every client with BLOCK_JOB_ERROR (stop pauses at the next pause point)
        return action == ErrorAction.IGNORE && sleep(IGNORE_RETRY_NANOS);
    }

    /**
     * Unlimited speed: {@link #WORKERS} copiers claim runs side by side (QEMU's block-copy keeps
     * many requests in flight), so one's reads overlap another's writes. They stop when nothing is
     * left to claim, at a pause or cancel request, or at the first failed copy, which is returned
     * for the job's thread to handle (its run is left to copy again).
     */
    private CopyFailure burst(ByteBuffer[] bufs) {
        AtomicLong cursor = new AtomicLong();
        AtomicReference<CopyFailure> failure = new AtomicReference<>();
        AtomicReference<RuntimeException> crash = new AtomicReference<>();
        Thread[] workers = new Thread[bufs.length];
        for (int i = 0; i < workers.length; i++) {
            ByteBuffer buf = bufs[i];
            workers[i] = Thread.ofVirtual().name("backup-" + id() + "-" + i).start(() -> {
                try {
                    work(buf, cursor, failure);
                } catch (RuntimeException e) {
                    crash.compareAndSet(null, e);
                }
            });
        }
        for (Thread w : workers) {
            boolean interrupted = false;
            while (true) {
                try {
                    w.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
        if (crash.get() != null) {
            throw crash.get();
        }
        return failure.get();
    }

    private void work(ByteBuffer buf, AtomicLong cursor, AtomicReference<CopyFailure> failure) {
        while (failure.get() == null && !stopRequested()) {
            long from = cursor.get();
            BlockCopy.Run r = copy.claimNext(from, CHUNK);
            if (r == null && from > 0) {
                // runs released for another try lie behind the cursor
                r = copy.claimNext(0, CHUNK);
            }
            if (r == null) {
                return;
            }
            cursor.set(r.end());
            CopyFailure f = copyRun(r, buf);
            if (f != null) {
                failure.compareAndSet(null, f);
                return;
            }
        }
    }

    /** Copies one claimed run and ends the claim; on failure the run is left to copy again. */
    private CopyFailure copyRun(BlockCopy.Run r, ByteBuffer buf) {
        try {
            copy.copy(r, buf);
            copy.release(r, true);
            addProgress(r.length());
            copied(r.length());
            if (discardSource) {
                discardCopied(r);
            }
            return null;
        } catch (CopyFailure f) {
            copy.release(r, false);
            return f;
        } catch (RuntimeException e) {
            copy.release(r, false);
            throw e;
        }
    }

    /**
     * discard-source: the run is on the target now, so the source may let it go (a fleecing
     * snapshot releases its saved copy). As in QEMU, a failed discard fails nothing; it is logged.
     * After the claim is released, so the discard's own copy-before-write finds nothing to wait for.
     */
    private void discardCopied(BlockCopy.Run r) {
        try {
            source.discard(r.start(), r.length());
        } catch (IOException e) {
            LOG.debug(
                    "discard-source of {}+{} on '{}' failed: {}",
                    r.start(),
                    r.length(),
                    source.nodeName(),
                    e.toString());
        }
    }

    /** Starts the target's writeback every {@link #WRITEBACK_EVERY} bytes. */
    private void copied(long bytes) {
        if (WRITEBACK_EVERY > 0 && unsynced.addAndGet(bytes) >= WRITEBACK_EVERY) {
            unsynced.set(0);
            try {
                target.jobIo().startWriteback();
            } catch (IOException e) {
                // only a hint: the flush at the end reports what matters
            }
        }
    }

    private ErrorAction decide(CopyFailure f) {
        OnError policy = f.read() ? onSourceError : onTargetError;
        return switch (policy) {
            case REPORT -> ErrorAction.REPORT;
            case IGNORE -> ErrorAction.IGNORE;
            case STOP -> ErrorAction.STOP;
            case ENOSPC, AUTO -> f.errno() == BlockException.ENOSPC ? ErrorAction.STOP : ErrorAction.REPORT;
        };
    }

    @Override
    protected void commit() {
        if (syncBitmap != null) {
            cleanupSyncBitmap(true);
        }
    }

    @Override
    protected void abort() {
        if (syncBitmap != null) {
            cleanupSyncBitmap(false);
        }
    }

    /** QEMU's backup_cleanup_sync_bitmap. */
    private void cleanupSyncBitmap(boolean success) {
        boolean takeSuccessor = (success || bitmapMode == BitmapMode.ALWAYS) && bitmapMode != BitmapMode.NEVER;
        DirtyBitmap bm = takeSuccessor
                ? source.bitmaps().abdicate(syncBitmap)
                : source.bitmaps().reclaim(syncBitmap);
        if (!success && bitmapMode == BitmapMode.ALWAYS) {
            for (BlockCopy.Run r : copy.remaining()) {
                bm.setDirty(r.start(), r.length());
            }
        }
    }

    @Override
    protected void clean() {
        copy.detach();
        source.removeBeforeWrite(hook);
        copy.awaitIdle();
        try {
            // after success a no-op (the run wrote it back before its flush); after a failure or a
            // cancel it leaves a target that is consistent as far as the copy got
            target.jobIo().setMetadataWriteback(false);
        } catch (IOException e) {
            // the job has already ended in failure or was cancelled: nothing more to report
        }
        target.removeBlocker(BLOCKER);
        if (onClean != null) {
            onClean.run();
        }
    }
}
