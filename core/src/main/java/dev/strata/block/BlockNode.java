package dev.strata.block;

import dev.strata.block.dirty.BitmapException;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.dirty.DirtyBitmaps;
import dev.strata.block.dirty.StoredBitmap;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A named node of the block graph: one driver, its children ("file", "backing") and the I/O API
 * every user of an image goes through (qemu-img's commands, QMP, NBD, jobs).
 *
 * <p>The node checks ranges and read-only state once so that drivers need not; it walks the
 * backing chain for block status. Children that the node opened itself (a nested {@code file}
 * definition, a backing file named in the image) are owned and closed with it; children given by
 * node-name belong to the graph.
 *
 * <p>Dirty tracking (docs/architecture.md invariant 1): every write, zero-write and discard marks
 * the node's recording bitmaps for the whole range after the driver call and before the call
 * returns, whether the driver succeeded or not (a failed write may have changed part of the range;
 * a bitmap may over-report, never under-report). After, not before, because of the successor a
 * backup freezes its bitmap with: a write still in flight when the job starts may land after the
 * job's point in time, so it must be marked in the successor that exists once the job has started,
 * which only a mark made after the data landed is sure to reach. A write that landed before the job
 * started but is marked after is in the successor only; the backup then keeps the old contents of
 * that cluster, which is a valid state for a write not yet acknowledged, and the next incremental
 * copies the new ones. For the same reason a {@code block-dirty-bitmap-clear} racing a write never
 * loses it.
 *
 * <p>I/O gate: every request enters the node's {@link IoGate} for its duration, so {@link #drain}
 * can wait for the node to be idle and hold new requests back (blockdev-del, transactions).
 */
public final class BlockNode implements AutoCloseable {
    // set at open, never changed
    private final String nodeName;
    private final boolean autoNamed;
    private final BlockDriver driver;
    private final List<BlockNode> owned;
    private final DirtyBitmaps bitmaps = new DirtyBitmaps(this::deleteStoredCopy);
    private final IoGate gate = new IoGate();
    private final JobIo jobIo = new JobIo(this);
    /** QEMU's {@code discard=unmap}: pass discards on; with {@code ignore} they do nothing at all. */
    private final boolean unmap;
    /** QEMU's {@code cache.no-flush} (qemu-img {@code -t unsafe}): flush is a no-op on this node. */
    private final boolean noFlush;

    private volatile boolean closed;
    // replaced, never mutated, under this
    private volatile BeforeWrite[] beforeWrites = new BeforeWrite[0];
    private volatile List<String> blockers = List.of();
    /** Users outside the graph (NBD exports, a job's filter node): blockdev-del refuses the node. */
    private final java.util.concurrent.atomic.AtomicInteger users = new java.util.concurrent.atomic.AtomicInteger();

    BlockNode(String nodeName, boolean autoNamed, BlockDriver driver, List<BlockNode> owned) {
        this(nodeName, autoNamed, driver, owned, true, false);
    }

    BlockNode(
            String nodeName,
            boolean autoNamed,
            BlockDriver driver,
            List<BlockNode> owned,
            boolean unmap,
            boolean noFlush) {
        this.nodeName = nodeName;
        this.autoNamed = autoNamed;
        this.driver = driver;
        this.owned = List.copyOf(owned);
        this.unmap = unmap;
        this.noFlush = noFlush;
    }

    public String nodeName() {
        return nodeName;
    }

    /** Whether the name was generated ("#block123") rather than given by the user. */
    public boolean autoNamed() {
        return autoNamed;
    }

    public String driverName() {
        return driver.format();
    }

    public BlockDriver driver() {
        return driver;
    }

    /** The image's file name as QEMU reports it: the path for "file", the file child's otherwise. */
    public String filename() {
        if (driver instanceof FileBacked f) {
            return f.filename();
        }
        // a format's file, or a filter's image (blkdebug): the host file underneath
        BlockNode file = driver.children().get("file");
        if (file == null) {
            file = driver.children().get("image");
        }
        return file == null ? "" : file.filename();
    }

    public Map<String, BlockNode> children() {
        return driver.children();
    }

    public Optional<BlockNode> backing() {
        return Optional.ofNullable(driver.children().get("backing"));
    }

    public Optional<BlockNode> file() {
        return Optional.ofNullable(driver.children().get("file"));
    }

    public boolean readOnly() {
        return driver.readOnly();
    }

    /** Whether flush does nothing on this node (QEMU's cache.no-flush, cache=unsafe). */
    public boolean noFlush() {
        return noFlush;
    }

    public long length() throws IOException {
        return driver.length();
    }

    public int clusterSize() {
        return driver.clusterSize();
    }

    /** Counts a user outside the graph (an export); blockdev-del refuses the node until it detaches. */
    public void attachUser() {
        users.incrementAndGet();
    }

    public void detachUser() {
        users.decrementAndGet();
    }

    /** Whether anything outside the graph uses the node (QEMU: the node has a BlockBackend). */
    public boolean hasUsers() {
        return users.get() > 0;
    }

    /** The node's dirty bitmaps (QMP's block-dirty-bitmap-* commands act on these). */
    public DirtyBitmaps bitmaps() {
        return bitmaps;
    }

    /**
     * Takes over the bitmaps the image stores (QEMU's persistent bitmaps) as this node's: read-only
     * on a read-only node; on a writable one the image first marks them in use, before any write.
     * The graph calls this once, when it adds the node.
     */
    void adoptStoredBitmaps() throws IOException {
        List<StoredBitmap> stored = driver.storedBitmaps();
        if (stored.isEmpty()) {
            return;
        }
        driver.trackStoredBitmaps();
        bitmaps.load(stored, driver.length(), driver.readOnly());
    }

    /**
     * block-dirty-bitmap-add on this node (QMP, qemu-img bitmap --add, convert --bitmaps), QEMU's
     * checks in its order after the caller's node lookup: the name, the granularity (the node's
     * default when null), the persistence checks, then the node's length and the bitmap rules.
     */
    public DirtyBitmap addBitmap(String name, Long granularity, boolean disabled, boolean persistent)
            throws BitmapException {
        if (name.isEmpty()) {
            throw new BitmapException("Bitmap name cannot be empty");
        }
        long g = granularity != null ? granularity : DirtyBitmaps.defaultGranularity(clusterSize());
        DirtyBitmaps.checkGranularity(g);
        if (persistent) {
            checkStorableBitmap(name, g);
        }
        long length;
        try {
            length = length();
        } catch (IOException e) {
            throw new BitmapException("could not get length of device: " + e.getMessage());
        }
        return bitmaps.add(name, length, g, disabled, persistent);
    }

    /**
     * QEMU's checks of a new persistent bitmap on this node, in its order and words: a format that
     * stores none refuses outright, then a name in use, then the format's own checks.
     */
    private void checkStorableBitmap(String name, long granularity) throws BitmapException {
        if (!driver.storesBitmaps()) {
            throw new BitmapException("Can't store persistent bitmaps to " + nodeName + ": Operation not supported");
        }
        if (bitmaps.find(name).isPresent()) {
            throw new BitmapException("Bitmap already exists: " + name);
        }
        try {
            driver.checkNewPersistentBitmap(name, granularity, bitmaps.persistentNames());
        } catch (BlockException e) {
            throw new BitmapException(
                    "Can't make bitmap '" + name + "' persistent in '" + nodeName + "': " + e.getMessage());
        }
    }

    /**
     * How a persistent bitmap of this node leaves the image when the user removes it: deleted from
     * the image at once, as QEMU does; the removal is refused when that fails.
     */
    private void deleteStoredCopy(DirtyBitmap b) throws BitmapException {
        if (!b.persistent()) {
            return;
        }
        try {
            driver.removeStoredBitmap(b.name());
        } catch (IOException e) {
            throw new BitmapException("Could not remove bitmap '" + b.name() + "' from the image: " + e.getMessage());
        }
    }

    /**
     * Waits until no request is in flight on this node and holds new ones back until the result
     * is closed; the calling thread may still issue requests meanwhile.
     */
    public IoGate.Drained drain() {
        return gate.drain();
    }

    /** Requests in flight on this node now. */
    public long inFlight() {
        return gate.inFlight();
    }

    /** Adds a hook that runs before every write, zero-write and discard (copy-before-write). */
    public synchronized void addBeforeWrite(BeforeWrite hook) {
        BeforeWrite[] next = java.util.Arrays.copyOf(beforeWrites, beforeWrites.length + 1);
        next[next.length - 1] = hook;
        beforeWrites = next;
    }

    public synchronized void removeBeforeWrite(BeforeWrite hook) {
        beforeWrites =
                java.util.Arrays.stream(beforeWrites).filter(h -> h != hook).toArray(BeforeWrite[]::new);
    }

    private void runBeforeWrites(long offset, long length) throws IOException {
        for (BeforeWrite h : beforeWrites) {
            h.beforeWrite(this, offset, length);
        }
    }

    /**
     * Marks the node as used by an operation (QEMU's op blockers): while any blocker is present
     * the node cannot be deleted or used by another job; {@code reason} completes "Node 'x' is
     * busy: " ("block device is in use by block job: backup").
     */
    public synchronized void addBlocker(String reason) {
        List<String> next = new ArrayList<>(blockers);
        next.add(reason);
        blockers = List.copyOf(next);
    }

    public synchronized void removeBlocker(String reason) {
        List<String> next = new ArrayList<>(blockers);
        next.remove(reason);
        blockers = List.copyOf(next);
    }

    /** The first reason the node is in use, if any. */
    public Optional<String> blocker() {
        List<String> b = blockers;
        return b.isEmpty() ? Optional.empty() : Optional.of(b.getFirst());
    }

    /** A block job's own requests on this node (admitted through drains); see {@link JobIo}. */
    public JobIo jobIo() {
        return jobIo;
    }

    IoGate gate() {
        return gate;
    }

    public void read(long offset, ByteBuffer dst) throws IOException {
        checkRange(offset, dst.remaining());
        enter();
        try {
            driver.read(offset, dst);
        } finally {
            gate.leave();
        }
    }

    public void read(long offset, byte[] buf, int off, int len) throws IOException {
        read(offset, ByteBuffer.wrap(buf, off, len));
    }

    public void write(long offset, ByteBuffer src) throws IOException {
        checkWritable();
        long length = src.remaining();
        checkRange(offset, length);
        enter();
        try {
            runBeforeWrites(offset, length);
            driver.write(offset, src);
        } finally {
            bitmaps.markDirty(offset, length);
            gate.leave();
        }
    }

    public void write(long offset, byte[] buf, int off, int len) throws IOException {
        write(offset, ByteBuffer.wrap(buf, off, len));
    }

    /**
     * Copy offload: where the first bytes of the range lie in a host file ({@link
     * BlockDriver#hostRun}), or null. The node is held open for the lookup only: whoever uses the
     * run holds a node above it open meanwhile (a format driver, for its file child), or calls
     * {@link #withHostRun}.
     */
    public HostRun hostRun(long offset, long length) throws IOException {
        checkRange(offset, length);
        enter();
        try {
            return runAt(offset, length);
        } finally {
            gate.leave();
        }
    }

    private HostRun runAt(long offset, long length) throws IOException {
        return length == 0 ? null : driver.hostRun(offset, length);
    }

    /** What a caller of {@link #withHostRun} does with the run; returns a count for the caller. */
    @FunctionalInterface
    public interface HostRunUse {
        long use(HostRun run) throws IOException;
    }

    /**
     * Calls {@code use} with the host run of the range's first bytes, holding the node open
     * meanwhile; returns what {@code use} returns, or 0 (without calling it) when those bytes are not
     * stored plainly in a host file.
     */
    public long withHostRun(long offset, long length, HostRunUse use) throws IOException {
        checkRange(offset, length);
        enter();
        try {
            return withHostRunInGate(offset, length, use);
        } finally {
            gate.leave();
        }
    }

    long withHostRunInGate(long offset, long length, HostRunUse use) throws IOException {
        HostRun run = runAt(offset, length);
        return run == null ? 0 : use.use(run);
    }

    /**
     * Writes the bytes of {@code run} at {@code offset}, as {@link #write} does: inside the kernel
     * where the driver can ({@link BlockDriver#writeHost}), else through memory.
     */
    public void writeHost(long offset, HostRun run) throws IOException {
        checkWritable();
        checkRange(offset, run.length());
        enter();
        try {
            runBeforeWrites(offset, run.length());
            writeHostInGate(offset, run);
        } finally {
            bitmaps.markDirty(offset, run.length());
            gate.leave();
        }
    }

    void writeHostInGate(long offset, HostRun run) throws IOException {
        if (!driver.writeHost(offset, run)) {
            HostCopy.throughMemory(run, (pos, buf) -> driver.write(offset + pos, buf));
        }
    }

    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        checkWritable();
        checkRange(offset, length);
        if (length > 0) {
            enter();
            try {
                runBeforeWrites(offset, length);
                driver.writeZeroes(offset, length, mayUnmap);
            } finally {
                bitmaps.markDirty(offset, length);
                gate.leave();
            }
        }
    }

    public void discard(long offset, long length) throws IOException {
        checkWritable();
        checkRange(offset, length);
        // discard=ignore (QEMU's default): the data stays as it was, so there is nothing to track
        if (length > 0 && unmap) {
            enter();
            try {
                runBeforeWrites(offset, length);
                driver.discard(offset, length);
            } finally {
                // discarded data reads back differently (zeros or backing data): it changed
                bitmaps.markDirty(offset, length);
                gate.leave();
            }
        }
    }

    /** The largest length a node may have: QEMU's BDRV_MAX_LENGTH (INT64_MAX rounded down to 1 GiB). */
    public static final long MAX_LENGTH = Long.MAX_VALUE & -(1L << 30);

    /**
     * Changes the virtual size, with QEMU's checks in QEMU's order (bdrv_co_truncate): negative,
     * too large, read-only. The node is drained meanwhile; its bitmaps follow (bits past the end
     * dropped, the new area clean), and a busy bitmap refuses before the driver changes anything.
     */
    public void truncate(long newLength) throws IOException {
        if (newLength < 0) {
            throw new BlockException("Image size cannot be negative", BlockException.EINVAL);
        }
        if (newLength > MAX_LENGTH) {
            throw new BlockException(
                    "offset(" + newLength + ") exceeds maximum(" + MAX_LENGTH + ")", BlockException.EINVAL);
        }
        ensureOpen();
        if (driver.readOnly()) {
            throw new BlockException("Image is read-only", BlockException.EACCES);
        }
        try (IoGate.Drained d = gate.drain()) {
            ensureOpen();
            bitmaps.checkResizable();
            driver.truncate(newLength);
            bitmaps.resize(newLength);
        } catch (BitmapException e) {
            throw new BlockException(e.getMessage(), BlockException.EBUSY);
        }
    }

    /** Makes completed writes durable, unless the node was opened with no-flush (cache=unsafe). */
    public void flush() throws IOException {
        if (noFlush) {
            ensureOpen();
            return;
        }
        enter();
        try {
            BlockNode primary = driver.children().get("file");
            if (primary != null) {
                primary.debugEvent("flush_to_os");
                primary.debugEvent("flush_to_disk");
            }
            driver.flush();
        } finally {
            gate.leave();
        }
    }

    /** Tells this node's driver that a parent reached {@code event} (see {@link BlockDriver#debugEvent}). */
    public void debugEvent(String event) {
        driver.debugEvent(event);
    }

    /**
     * Status of {@code [offset, offset+length)} through the whole backing chain: contiguous extents
     * that cover the range exactly, adjacent runs of the same kind and depth merged.
     */
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        checkRange(offset, length);
        enter();
        try {
            return blockStatusInGate(offset, length);
        } finally {
            gate.leave();
        }
    }

    List<Extent> blockStatusInGate(long offset, long length) throws IOException {
        List<Extent> out = new ArrayList<>();
        long pos = offset;
        long end = offset + length;
        while (pos < end) {
            List<Extent> layer = driver.blockStatus(pos, end - pos);
            if (layer.isEmpty()) {
                throw new BlockException("driver " + driver.format() + " returned no block status at " + pos);
            }
            for (Extent e : layer) {
                if (e.offset() != pos || e.end() > end) {
                    throw new BlockException("driver " + driver.format() + " returned a bad extent " + e);
                }
                if (e.kind() == Extent.Kind.UNALLOCATED && backing().isPresent()) {
                    resolveInBacking(backing().get(), e, out);
                } else {
                    Extent.appendMerged(out, e);
                }
                pos = e.end();
            }
        }
        return out;
    }

    private static void resolveInBacking(BlockNode backing, Extent e, List<Extent> out) throws IOException {
        long backingLength = backing.length();
        long split = Math.min(e.end(), Math.max(e.offset(), backingLength));
        if (split > e.offset()) {
            for (Extent b : backing.blockStatus(e.offset(), split - e.offset())) {
                Extent.appendMerged(out, b.withDepth(b.depth() + 1));
            }
        }
        if (split < e.end()) {
            // past the end of a shorter backing file: reads as zeros, found in no layer
            Extent.appendMerged(out, new Extent(split, e.end() - split, Extent.Kind.UNALLOCATED, 1, -1, null));
        }
    }

    void checkRange(long offset, long length) throws IOException {
        ensureOpen();
        if (offset < 0 || length < 0 || offset > Long.MAX_VALUE - length) {
            throw new BlockException(
                    "Request out of range: offset " + offset + " length " + length, BlockException.EINVAL);
        }
        if (driver.growable()) {
            return;
        }
        long size = driver.length();
        if (offset > size || length > size - offset) {
            throw new BlockException(
                    "Request out of range: offset " + offset + " length " + length + " on node '" + nodeName
                            + "' of size " + size,
                    BlockException.EINVAL);
        }
    }

    void checkWritable() throws IOException {
        ensureOpen();
        if (driver.readOnly()) {
            throw new BlockException("Node '" + nodeName + "' is read only", BlockException.EPERM);
        }
    }

    private void ensureOpen() throws BlockException {
        if (closed) {
            throw new BlockException("Node '" + nodeName + "' is closed");
        }
    }

    /** Enters the gate; a node closed meanwhile refuses (close drains, so nothing slips past it). */
    private void enter() throws BlockException {
        gate.enter();
        if (closed) {
            gate.leave();
            throw new BlockException("Node '" + nodeName + "' is closed");
        }
    }

    void enterAlways() throws BlockException {
        gate.enterAlways();
        if (closed) {
            gate.leave();
            throw new BlockException("Node '" + nodeName + "' is closed");
        }
    }

    public boolean isClosed() {
        return closed;
    }

    /**
     * Waits for requests in flight, stores the persistent bitmaps (a failure is logged, as QEMU
     * reports it, and does not fail the close), then closes the driver (which writes back what it
     * caches), then the children this node opened. Requests that arrive meanwhile fail as closed.
     */
    @Override
    public void close() throws IOException {
        if (closed) {
            return;
        }
        try (IoGate.Drained d = gate.drain()) {
            closed = true;
        }
        IOException failure = null;
        if (!driver.readOnly()) {
            // the persistent bitmaps go back to the image before the driver's final flush; as in
            // QEMU, a failure loses them (the image keeps them marked in use, so inconsistent) but
            // not the close: the node is gone either way, and its data is what matters
            try {
                driver.storeBitmaps(bitmaps.toStore());
            } catch (IOException e) {
                org.slf4j.LoggerFactory.getLogger(BlockNode.class)
                        .warn("Lost persistent bitmaps during inactivation of node '{}': {}", nodeName, e.getMessage());
            }
        }
        try {
            driver.close();
        } catch (IOException e) {
            failure = e;
        }
        for (BlockNode child : owned) {
            try {
                child.close();
            } catch (IOException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    @Override
    public String toString() {
        return "BlockNode[" + nodeName + ", " + driver.format() + "]";
    }
}
