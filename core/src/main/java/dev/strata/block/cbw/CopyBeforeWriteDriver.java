package dev.strata.block.cbw;

import dev.strata.bitmap.HBitmap;
import dev.strata.block.BeforeWrite;
import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.OpenContext;
import dev.strata.block.PassThroughFilter;
import dev.strata.block.dirty.DirtyBitmap;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * QEMU's {@code copy-before-write} filter as blockdev-add opens it, the first half of pull-mode
 * fleecing: from the moment it opens, the old contents of every cluster of {@code file} are saved
 * to {@code target} before anything overwrites them, so {@link SnapshotAccessDriver} over this
 * filter reads {@code file} as it was at that moment.
 *
 * <p>Options as QEMU's: {@code file}, {@code target}, {@code bitmap} (only the clusters dirty in
 * that bitmap at open are saved and readable through the snapshot), {@code on-cbw-error}
 * ({@code break-guest-write}: a failed save fails the write; {@code break-snapshot}: the write goes
 * on and every later snapshot read fails), {@code cbw-timeout} (seconds a write waits for its save; past it the save counts as failed,
 * ETIMEDOUT), {@code min-cluster-size}.
 *
 * <p>Unlike QEMU's filter, the save hooks into {@code file} itself ({@link BeforeWrite}), so a
 * write that reaches {@code file} another way (an NBD export of it, a job) is saved too: the
 * snapshot stays the point in time whatever path a write takes.
 *
 * <p>Concurrency: {@code lock} orders saves against snapshot reads. A snapshot read holds it
 * shared while it decides, per cluster, between {@code target} (saved) and {@code file} (not yet
 * overwritten) and reads; a save holds it exclusively while it copies, so a write never overwrites
 * a cluster a snapshot read is taking from {@code file}. Writes to clusters already saved do not
 * take it. {@code saved} and {@code readable} change only under the exclusive lock.
 */
public final class CopyBeforeWriteDriver extends PassThroughFilter {
    private static final long DEFAULT_CLUSTER = 64 << 10;

    private final BlockNode target;
    private final long cluster;
    private final boolean breakSnapshot;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    /** Clusters that need no save any more: saved to target, outside the bitmap, or discarded. */
    private final HBitmap saved;
    /** Clusters the snapshot may read: in the bitmap (all without one) and not discarded. */
    private final HBitmap readable;

    private final BeforeWrite hook = (node, offset, length) -> saveBefore(offset, length);
    /** cbw-timeout in nanoseconds, 0 for none. */
    private final long timeoutNanos;
    /** The one buffer saves copy through: saves run one at a time, under the exclusive lock. */
    private final ByteBuffer saveBuffer;

    private volatile String broken;

    private CopyBeforeWriteDriver(
            BlockNode file,
            BlockNode target,
            long cluster,
            boolean breakSnapshot,
            long timeoutNanos,
            DirtyBitmap bitmap)
            throws IOException {
        super(file);
        this.target = target;
        this.cluster = cluster;
        this.breakSnapshot = breakSnapshot;
        this.timeoutNanos = timeoutNanos;
        this.saveBuffer = ByteBuffer.allocate((int) cluster);
        long length = file.length();
        long clusters = (length + cluster - 1) / cluster;
        this.saved = new HBitmap(Math.max(clusters, 1));
        this.readable = new HBitmap(Math.max(clusters, 1));
        if (bitmap == null) {
            readable.set(0, clusters);
            return;
        }
        // only the bitmap's dirty extents are in the snapshot: the rest needs no save
        saved.set(0, clusters);
        for (long off = bitmap.nextDirty(0); off >= 0 && off < length; off = bitmap.nextDirty(off)) {
            long end = Math.min(length, bitmap.nextClean(off));
            long first = off / cluster;
            long n = (end + cluster - 1) / cluster - first;
            readable.set(first, n);
            saved.reset(first, n);
            off = end;
        }
    }

    public static CopyBeforeWriteDriver open(BlockOptions options, OpenContext context) throws IOException {
        BlockNode file = context.openChild(options, "file", context.flags());
        if (file == null) {
            throw new BlockException("A block device must be specified for \"file\"", BlockException.EINVAL);
        }
        BlockNode target = context.openChild(options, "target", context.flags());
        if (target == null) {
            throw new BlockException("A block device must be specified for \"target\"", BlockException.EINVAL);
        }
        DirtyBitmap bitmap = null;
        if (options.child("bitmap").isPresent()) {
            BlockOptions b = options.child("bitmap").get();
            String nodeName = b.requireString("node");
            String name = b.requireString("name");
            BlockNode node = context.findNode(nodeName)
                    .orElseThrow(() -> new BlockException(
                            "Cannot find device='" + nodeName + "' nor node-name='" + nodeName + "'"));
            bitmap = node.bitmaps()
                    .find(name)
                    .orElseThrow(() -> new BlockException("Dirty bitmap '" + name + "' not found"));
        }
        boolean breakSnapshot = switch (options.string("on-cbw-error").orElse("break-guest-write")) {
            case "break-guest-write" -> false;
            case "break-snapshot" -> true;
            default -> throw new BlockException("Invalid parameter 'on-cbw-error'", BlockException.EINVAL);
        };
        long timeoutSeconds = options.number("cbw-timeout", 0);
        long min = options.number("min-cluster-size", 0);
        long cluster = Math.max(Math.max(DEFAULT_CLUSTER, target.clusterSize()), min);
        if (Long.bitCount(cluster) != 1) {
            throw new BlockException("min-cluster-size needs to be a power of 2", BlockException.EINVAL);
        }
        CopyBeforeWriteDriver d = new CopyBeforeWriteDriver(
                file, target, cluster, breakSnapshot, TimeUnit.SECONDS.toNanos(timeoutSeconds), bitmap);
        file.addBeforeWrite(d.hook);
        return d;
    }

    /** Saves the clusters of {@code [offset, offset+length)} not saved yet, before they change. */
    private void saveBefore(long offset, long length) throws IOException {
        if (length <= 0 || broken != null) {
            return;
        }
        long first = offset / cluster;
        long last = Math.min((offset + length - 1) / cluster, saved.size() - 1);
        long clear = saved.nextClear(first);
        if (clear < 0 || clear > last) {
            return;
        }
        try {
            if (timeoutNanos == 0) {
                save(first, last);
            } else {
                saveWithin(first, last);
            }
        } catch (IOException e) {
            if (!breakSnapshot) {
                throw e;
            }
            // break-snapshot: the guest's write goes on, the point in time is gone
            broken = e.getMessage();
        }
    }

    /**
     * cbw-timeout: the save runs on a thread of its own and the write waits for it at most the
     * timeout; past it the save counts as failed (QEMU's ETIMEDOUT) and the write goes on or fails
     * as on-cbw-error says. A save that finishes later still marks what it saved.
     */
    private void saveWithin(long first, long last) throws IOException {
        CompletableFuture<Void> done = new CompletableFuture<>();
        Thread.ofVirtual().name("cbw-save").start(() -> {
            try {
                save(first, last);
                done.complete(null);
            } catch (IOException | RuntimeException e) {
                done.completeExceptionally(e);
            }
        });
        try {
            done.get(timeoutNanos, TimeUnit.NANOSECONDS);
        } catch (TimeoutException e) {
            throw new BlockException(BlockException.strerror(BlockException.ETIMEDOUT), BlockException.ETIMEDOUT);
        } catch (ExecutionException e) {
            throw e.getCause() instanceof IOException io ? io : new BlockException(String.valueOf(e.getCause()), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new BlockException("interrupted", BlockException.EIO);
        }
    }

    /** Copies the clusters of [first, last] not saved yet from file to target, under the exclusive lock. */
    private void save(long first, long last) throws IOException {
        lock.writeLock().lock();
        try {
            long end = filtered.length();
            ByteBuffer buf = saveBuffer;
            for (long c = saved.nextClear(first); c >= 0 && c <= last; c = saved.nextClear(c + 1)) {
                long at = c * cluster;
                int len = (int) Math.min(cluster, end - at);
                if (len <= 0) {
                    break;
                }
                buf.clear().limit(len);
                filtered.read(at, buf);
                buf.flip();
                target.write(at, buf);
                saved.set(c, 1);
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    // ---------------------------------------------------------------------------------------
    // the snapshot, for snapshot-access

    /** Reads the point in time: each cluster from target where saved, else from file. */
    void snapshotRead(long offset, ByteBuffer dst) throws IOException {
        if (broken != null) {
            // before the lock: a save that timed out may still hold it
            throw new BlockException("Permission denied", BlockException.EACCES);
        }
        lock.readLock().lock();
        try {
            checkReadable(offset, dst.remaining());
            long pos = offset;
            while (dst.hasRemaining()) {
                long c = pos / cluster;
                int n = (int) Math.min(dst.remaining(), (c + 1) * cluster - pos);
                ByteBuffer part = dst.slice(dst.position(), n);
                if (saved.get(c)) {
                    target.read(pos, part);
                } else {
                    filtered.read(pos, part);
                }
                dst.position(dst.position() + n);
                pos += n;
            }
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * The point in time's block status: where a cluster is saved, the target's; where not, the
     * file's; unreadable clusters are reported as data (reading them fails).
     */
    List<Extent> snapshotBlockStatus(long offset, long length) throws IOException {
        lock.readLock().lock();
        try {
            List<Extent> out = new ArrayList<>();
            long end = offset + length;
            long pos = offset;
            while (pos < end) {
                boolean fromTarget = fromTarget(pos / cluster);
                long runEnd = Math.min(end, (pos / cluster + 1) * cluster);
                while (runEnd < end && fromTarget(runEnd / cluster) == fromTarget) {
                    runEnd = Math.min(end, runEnd + cluster);
                }
                for (Extent e : (fromTarget ? target : filtered).blockStatus(pos, runEnd - pos)) {
                    Extent.appendMerged(out, Extent.of(e.offset(), e.length(), e.kind()));
                }
                pos = runEnd;
            }
            return out;
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Whether the point in time's cluster {@code c} is read from the target (saved and readable). */
    private boolean fromTarget(long c) {
        return saved.get(c) && readable.get(c);
    }

    /**
     * The client is done with {@code [offset, offset+length)}: its whole clusters are no longer
     * readable, need no save, and their copies in target are discarded (QEMU's snapshot discard).
     */
    void snapshotDiscard(long offset, long length) throws IOException {
        long first = (offset + cluster - 1) / cluster;
        long last = Math.min((offset + length) / cluster, readable.size());
        if (last <= first) {
            return;
        }
        lock.writeLock().lock();
        try {
            readable.reset(first, last - first);
            saved.set(first, last - first);
        } finally {
            lock.writeLock().unlock();
        }
        target.discard(first * cluster, Math.min((last - first) * cluster, target.length() - first * cluster));
    }

    private void checkReadable(long offset, long length) throws BlockException {
        long last = (offset + Math.max(length, 1) - 1) / cluster;
        for (long c = offset / cluster; c <= last; c++) {
            if (!readable.get(c)) {
                throw new BlockException("Permission denied", BlockException.EACCES);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // the filter: every request goes to file (whose hook saves first)

    @Override
    public String format() {
        return "copy-before-write";
    }

    @Override
    public Map<String, BlockNode> children() {
        Map<String, BlockNode> c = new LinkedHashMap<>();
        c.put("file", filtered);
        c.put("target", target);
        return c;
    }

    @Override
    public void close() {
        filtered.removeBeforeWrite(hook);
    }
}
