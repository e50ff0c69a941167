package dev.strata.backup;

import dev.strata.bitmap.HBitmap;
import dev.strata.block.BlockNode;
import dev.strata.block.BufferPool;
import dev.strata.block.Extent;
import dev.strata.block.HostCopy;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.LongConsumer;

/**
 * The copying engine of one backup (QEMU's block-copy): which clusters of the source still have
 * to reach the target, and the copy of a run of them, shared by the job's background loop and by
 * copy-before-write.
 *
 * <p>Invariants: a cluster is in exactly one of three states: to copy ({@code toCopy} set), being
 * copied ({@code inFlight} set; whoever claimed it owns it), or done (neither). A claim moves
 * clusters from to-copy to in-flight in one step under {@code lock}; a failed copy puts them back.
 * So the job and a guest write never copy one cluster twice or race on it, and a guest write never
 * proceeds past a cluster whose old data has not yet been read (docs/architecture.md invariant 3).
 *
 * <p>Concurrency: {@code lock} guards both bitmaps and is never held during I/O; {@code settled}
 * is signalled whenever in-flight clusters finish. All I/O is job I/O ({@link dev.strata.block.JobIo}),
 * admitted through drains, so a copy that a guest write waits for never waits on a drain.
 *
 * <p>What is written: data runs of the source are copied; runs that read as zeros are written as
 * zeros only when the target would not already read zeros there (a fresh image, or a backing file
 * that is zero there), so an incremental target holds only the clusters that changed.
 */
final class BlockCopy {
    /** A claimed run of clusters, in bytes, clipped to the source's length. */
    record Run(long start, long end) {
        long length() {
            return end - start;
        }
    }

    // set at creation, never changed
    private final BlockNode source;
    private final BlockNode target;
    private final long length;
    private final long clusterSize;
    private final int clusterBits;
    private final boolean compress;
    private final LongConsumer progress;
    /**
     * Whether a run the target already reads as zeros may be skipped: not when the source is in
     * the target's backing chain (sync=none over the live disk), whose zeros are about to change.
     */
    private final boolean mayKeepTargetZeros;

    // guest writes inside copy-before-write now, and whether it has ended (see detach)
    private final java.util.concurrent.atomic.AtomicInteger activeWrites =
            new java.util.concurrent.atomic.AtomicInteger();
    private volatile boolean detached;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition settled = lock.newCondition();
    // guarded by lock
    private final HBitmap toCopy;
    private final HBitmap inFlight;

    BlockCopy(
            BlockNode source,
            BlockNode target,
            long length,
            long clusterSize,
            boolean compress,
            LongConsumer progress) {
        this.source = source;
        this.target = target;
        this.length = length;
        this.clusterSize = clusterSize;
        this.clusterBits = Long.numberOfTrailingZeros(clusterSize);
        this.compress = compress;
        this.progress = progress;
        this.mayKeepTargetZeros = !inChain(target, source);
        long clusters = (length + clusterSize - 1) >>> clusterBits;
        this.toCopy = new HBitmap(clusters);
        this.inFlight = new HBitmap(clusters);
    }

    private static boolean inChain(BlockNode top, BlockNode node) {
        for (BlockNode n = top; n != null; n = n.backing().orElse(null)) {
            if (n == node) {
                return true;
            }
        }
        return false;
    }

    long clusterSize() {
        return clusterSize;
    }

    /** Marks {@code [offset, offset+len)} (rounded out to clusters) to be copied. */
    void markToCopy(long offset, long len) {
        lock.lock();
        try {
            long first = offset >>> clusterBits;
            long last = Math.min(toCopy.size(), (offset + len + clusterSize - 1) >>> clusterBits);
            if (last > first) {
                toCopy.set(first, last - first);
            }
        } finally {
            lock.unlock();
        }
    }

    /** Drops {@code [offset, offset+len)} (whole clusters inside it only) from what is to copy. */
    void skip(long offset, long len) {
        lock.lock();
        try {
            long first = (offset + clusterSize - 1) >>> clusterBits;
            long end = offset + len >= length ? toCopy.size() : (offset + len) >>> clusterBits;
            if (end > first) {
                toCopy.reset(first, end - first);
            }
        } finally {
            lock.unlock();
        }
    }

    /** Bytes still to copy (whole clusters, the last one clipped to the source's length). */
    long bytesToCopy() {
        lock.lock();
        try {
            long n = toCopy.count() << clusterBits;
            long lastCluster = toCopy.size() - 1;
            if (lastCluster >= 0 && toCopy.get(lastCluster)) {
                n -= (toCopy.size() << clusterBits) - length;
            }
            return n;
        } finally {
            lock.unlock();
        }
    }

    /** The runs not yet copied, in bytes (what bitmap-mode always marks again on failure). */
    List<Run> remaining() {
        lock.lock();
        try {
            List<Run> out = new ArrayList<>();
            for (long c = toCopy.nextSet(0); c >= 0; ) {
                long e = toCopy.nextClear(c);
                long end = e < 0 ? toCopy.size() : e;
                out.add(new Run(c << clusterBits, Math.min(length, end << clusterBits)));
                c = end >= toCopy.size() ? -1 : toCopy.nextSet(end);
            }
            return out;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Claims the first run of clusters to copy at or after {@code from} that nobody copies now, at
     * most {@code maxBytes} long; null when no such cluster exists after {@code from}.
     */
    Run claimNext(long from, long maxBytes) {
        lock.lock();
        try {
            long c = from >>> clusterBits;
            while (c < toCopy.size()) {
                c = toCopy.nextSet(c);
                if (c < 0) {
                    return null;
                }
                if (!inFlight.get(c)) {
                    long max = Math.max(1, maxBytes >>> clusterBits);
                    long e = c + 1;
                    while (e < toCopy.size() && e - c < max && toCopy.get(e) && !inFlight.get(e)) {
                        e++;
                    }
                    return claim(c, e);
                }
                c++;
            }
            return null;
        } finally {
            lock.unlock();
        }
    }

    private Run claim(long first, long end) {
        toCopy.reset(first, end - first);
        inFlight.set(first, end - first);
        return new Run(first << clusterBits, Math.min(length, end << clusterBits));
    }

    /** Ends a claim: done when {@code copied}, else to copy again. */
    void release(Run r, boolean copied) {
        lock.lock();
        try {
            long first = r.start() >>> clusterBits;
            long n = ((r.end() + clusterSize - 1) >>> clusterBits) - first;
            inFlight.reset(first, n);
            if (!copied) {
                toCopy.set(first, n);
            }
            settled.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Whether nothing is left to copy and no copy is in flight. */
    boolean done() {
        lock.lock();
        try {
            return toCopy.isEmpty() && inFlight.isEmpty();
        } finally {
            lock.unlock();
        }
    }

    /** Waits until no copy is in flight (the job's end, when only guest writes still copy). */
    void awaitIdle() {
        lock.lock();
        try {
            while (!inFlight.isEmpty()) {
                settled.awaitUninterruptibly();
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * Copy-before-write: copies every cluster of {@code [offset, offset+len)} still to copy, waiting
     * first for clusters someone else is copying, so that the caller may then overwrite the range.
     */
    void beforeGuestWrite(long offset, long len) throws IOException {
        activeWrites.incrementAndGet();
        try {
            if (!detached) {
                copyBeforeWrite(offset, len);
            }
        } finally {
            activeWrites.decrementAndGet();
        }
    }

    /**
     * Ends copy-before-write without draining the source (the job's clean runs under the job lock,
     * where a drain could wait on a job read held back by a transaction's drain): later guest
     * writes copy nothing, and this waits for those copying now. Once the job has ended nothing is
     * left to copy on success, and on failure the target no longer matters.
     */
    void detach() {
        detached = true;
        lock.lock();
        try {
            while (activeWrites.get() > 0) {
                try {
                    settled.awaitNanos(1_000_000);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        } finally {
            lock.unlock();
        }
    }

    private void copyBeforeWrite(long offset, long len) throws IOException {
        if (len <= 0 || offset >= length) {
            return;
        }
        long first = offset >>> clusterBits;
        long end = Math.min(toCopy.size(), (Math.min(length, offset + len) + clusterSize - 1) >>> clusterBits);
        List<Run> mine = new ArrayList<>();
        lock.lock();
        try {
            while (busy(first, end)) {
                settled.awaitUninterruptibly();
            }
            for (long c = toCopy.nextSet(first); c >= 0 && c < end; ) {
                long e = toCopy.nextClear(c);
                long stop = e < 0 || e > end ? end : e;
                mine.add(claim(c, stop));
                c = stop >= toCopy.size() ? -1 : toCopy.nextSet(stop);
            }
        } finally {
            lock.unlock();
        }
        IOException failure = null;
        for (Run r : mine) {
            if (failure != null) {
                release(r, false);
                continue;
            }
            ByteBuffer buf = BUFFERS.take(Math.max(CBW_BUFFER, (int) clusterSize));
            try {
                copy(r, buf);
                release(r, true);
                progress.accept(r.length());
            } catch (CopyFailure f) {
                release(r, false);
                failure = (IOException) f.getCause();
            } finally {
                BUFFERS.give(buf);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /**
     * The buffers of every backup's copies (jobs and copy-before-write), reused from job to job: a
     * fresh direct buffer is zeroed page by page, and a first touch of a page costs more here than
     * the copy it holds (a 4 MiB buffer: about 15 ms, a third of a small incremental backup).
     */
    static final BufferPool BUFFERS = new BufferPool(16, 64L << 20);

    static final int CBW_BUFFER = 1 << 20;

    private boolean busy(long first, long end) {
        long c = inFlight.nextSet(first);
        return c >= 0 && c < end;
    }

    /**
     * Copies one claimed run through {@code buf} (whose capacity bounds each piece): data as data,
     * zeros as zeros where the target would not read zeros anyway.
     */
    void copy(Run r, ByteBuffer buf) throws CopyFailure {
        if (compress) {
            compressed(r, buf);
            return;
        }
        List<Extent> extents;
        try {
            extents = source.jobIo().blockStatus(r.start(), r.length());
        } catch (IOException e) {
            throw new CopyFailure(true, e);
        }
        for (Extent e : extents) {
            if (e.isZero()) {
                zeros(e.offset(), e.length());
            } else {
                data(e.offset(), e.end(), buf);
            }
        }
    }

    private void zeros(long offset, long len) throws CopyFailure {
        try {
            if (mayKeepTargetZeros && readsZero(target, offset, len)) {
                return;
            }
            target.jobIo().writeZeroes(offset, len);
        } catch (IOException e) {
            throw new CopyFailure(false, e);
        }
    }

    private static boolean readsZero(BlockNode node, long offset, long len) throws IOException {
        for (Extent t : node.jobIo().blockStatus(offset, len)) {
            if (!t.isZero()) {
                return false;
            }
        }
        return true;
    }

    /**
     * Copies data: what lies plainly in the source's host file goes file to file inside the kernel
     * ({@link dev.strata.block.HostRun}, copy_file_range); the rest (compressed clusters, data of
     * a backing file, drivers such as blkdebug) through {@code buf}.
     */
    private void data(long start, long end, ByteBuffer buf) throws CopyFailure {
        long pos = start;
        while (pos < end) {
            long n = HostCopy.ENABLED ? offload(pos, end) : 0;
            if (n == 0) {
                n = Math.min(buf.capacity(), end - pos);
                read(pos, buf, (int) n);
                try {
                    target.jobIo().write(pos, buf);
                } catch (IOException e) {
                    throw new CopyFailure(false, e);
                }
            }
            pos += n;
        }
    }

    /** Copies the first bytes of {@code [pos, end)} inside the kernel; 0 when they are not plainly stored. */
    private long offload(long pos, long end) throws CopyFailure {
        try {
            return source.jobIo().withHostRun(pos, end - pos, run -> {
                try {
                    target.jobIo().writeHost(pos, run);
                } catch (IOException e) {
                    throw new TargetFailed(e);
                }
                return run.length();
            });
        } catch (TargetFailed e) {
            // a kernel copy that fails reading the source counts as the target's failure too: the
            // two cannot be told apart, and the target (ENOSPC) is where such copies fail
            throw new CopyFailure(false, (IOException) e.getCause());
        } catch (IOException e) {
            throw new CopyFailure(true, e);
        }
    }

    /** A target write failure carried out of {@link #offload}'s callback, to be told from a source one. */
    private static final class TargetFailed extends IOException {
        private static final long serialVersionUID = 1L;

        TargetFailed(IOException cause) {
            super(cause);
        }
    }

    private void read(long pos, ByteBuffer buf, int n) throws CopyFailure {
        buf.clear().limit(n);
        try {
            source.jobIo().read(pos, buf);
        } catch (IOException e) {
            throw new CopyFailure(true, e);
        }
        buf.flip();
    }

    /** compress=true: each target cluster of the run is written compressed (QEMU's write_compressed). */
    private void compressed(Run r, ByteBuffer buf) throws CopyFailure {
        int piece = Math.max(512, target.clusterSize());
        for (long pos = r.start(); pos < r.end(); pos += piece) {
            int n = (int) Math.min(piece, r.end() - pos);
            read(pos, buf, n);
            try {
                if (allZero(buf) && mayKeepTargetZeros && readsZero(target, pos, n)) {
                    continue;
                }
                target.jobIo().writeCompressed(pos, buf);
            } catch (IOException e) {
                throw new CopyFailure(false, e);
            }
        }
    }

    private static boolean allZero(ByteBuffer b) {
        for (int i = b.position(); i < b.limit(); i++) {
            if (b.get(i) != 0) {
                return false;
            }
        }
        return true;
    }
}
