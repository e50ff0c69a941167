package dev.strata.block.qcow2;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.CompressedWriter;
import dev.strata.block.Extent;
import dev.strata.block.HostRun;
import dev.strata.block.OpenContext;
import dev.strata.block.dirty.StoredBitmap;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The qcow2 format driver: guest I/O through the cluster map, allocation through the refcounts,
 * unallocated clusters read from the backing node.
 *
 * <p>This class opens the image (feature checks, dirty repair, autoclear bits), owns the state
 * shared by every request (the metadata lock, {@link ClusterMap}, {@link Refcounts}, the
 * {@link ImageFile}, the header and the length) and hands the work on: reads and block status to
 * {@link Qcow2Reader}, data writes to {@link Qcow2Writer}, zero writes and discards to
 * {@link Qcow2ZeroDiscard}, a resize to {@link Qcow2Resize}.
 *
 * <p>Reads and writes of clusters that are already allocated (and, for writes, not shared) go
 * straight to their host clusters; everything that changes metadata (allocating writes, zero
 * writes, discards) runs as one step under an exclusive lock.
 *
 * <p>Concurrency: a read-write lock, owned here and taken by the classes above, guards the
 * metadata. Reads and in-place writes hold the shared side across the lookup and the data I/O, so
 * no cluster they use can be freed or reused meanwhile; allocating writes, zero writes and
 * discards hold the exclusive side from the lookup through the refcount, data and L2 writes, so
 * two writers never allocate the same guest cluster; a resize holds the exclusive side throughout.
 *
 * <p>Crash consistency: caches are write-through and every step is ordered so that the file is a
 * valid image after each single write (a crash may leak clusters, never corrupt):
 * <ol>
 *   <li>refcounts of new clusters are raised (new refcount blocks, and a grown refcount table, are
 *       complete before anything points to them) before any L1/L2 entry points to the clusters;
 *   <li>guest data, including the copied head and tail of a partly written cluster, is written
 *       before the L2 entry that points to it;
 *   <li>a new L2 table is written whole (zeros, or a copy of a shared table) before its L1 entry;
 *   <li>refcounts of clusters an entry no longer points to are lowered only after the new entry is
 *       written.
 * </ol>
 * A SIGKILL keeps the page cache, so this ordering of writes is enough; {@link #flush()} makes it
 * durable against power loss.
 *
 * <p>Dirty bit and lazy refcounts: a dirty image (left by a QEMU that crashed while using lazy
 * refcounts) is repaired before a read-write open ({@link Qcow2DirtyRepair}) and read as is when
 * read-only. Strata never sets the dirty bit, not even on a lazy_refcounts image: it always writes
 * refcounts eagerly and in the order above, so the refcounts on disk are never behind the L2
 * tables and a crash can leak clusters but leaves nothing a dirty bit would have to announce. The
 * lazy_refcounts compatible bit is kept, so QEMU goes on using lazy refcounts on the image.
 */
public final class Qcow2Driver implements BlockDriver, CompressedWriter {
    /** Autoclear bits Strata keeps set on a read-write open: the bitmaps extension's, which it maintains. */
    static final long KNOWN_AUTOCLEAR = Qcow2Header.AUTOCLEAR_BITMAPS;

    private static final long SUPPORTED_INCOMPAT =
            Qcow2Header.INCOMPAT_DIRTY | Qcow2Header.INCOMPAT_CORRUPT | Qcow2Header.INCOMPAT_COMPRESSION;
    private static final int L2_CACHE_BYTES = 8 << 20;

    // set at open, never changed
    private final BlockNode fileNode;
    private final ImageFile file;
    private final BlockNode backing;
    private final boolean readOnly;
    private final int clusterSize;
    private final ClusterMap map;
    private final Refcounts refcounts;
    private final Qcow2Reader reader;
    private final Qcow2Writer writer;
    private final Qcow2ZeroDiscard zeroDiscard;
    /** The image's persistent bitmaps: the directory on disk and its changes. */
    private final Qcow2BitmapStore bitmapStore;
    /** The bitmaps read at open, for the node to take over; bits are not kept here after that. */
    private volatile List<StoredBitmap> loadedBitmaps;
    /** See {@link #openWarnings()}: a bitmaps extension QEMU would ignore. */
    private final List<String> openWarnings;

    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    // changed only by a resize, under the exclusive lock; volatile for length() and info
    private volatile long size;
    private volatile Qcow2Header header;

    private Qcow2Driver(
            BlockNode fileNode,
            ImageFile file,
            BlockNode backing,
            boolean readOnly,
            Qcow2Header header,
            ClusterMap map,
            Refcounts refcounts,
            Qcow2BitmapStore bitmapStore,
            List<StoredBitmap> loadedBitmaps,
            List<String> openWarnings) {
        this.fileNode = fileNode;
        this.bitmapStore = bitmapStore;
        this.loadedBitmaps = loadedBitmaps;
        this.openWarnings = openWarnings;
        this.file = file;
        this.backing = backing;
        this.readOnly = readOnly;
        this.header = header;
        this.clusterSize = header.clusterSize();
        this.size = header.size();
        this.map = map;
        this.refcounts = refcounts;
        this.reader = new Qcow2Reader(this, fileNode, file, backing, map, lock, header);
        this.writer = new Qcow2Writer(this, reader, fileNode, file, map, refcounts, lock, header);
        this.zeroDiscard = new Qcow2ZeroDiscard(this, writer, backing, map, refcounts, lock, header);
    }

    /**
     * Opens from options: {@code file} (nested options or node-name), optional {@code backing}
     * (null for none, a node-name, or nested options); without {@code backing} the backing file
     * named in the image opens read-only, relative to the image's directory.
     */
    public static BlockDriver open(BlockOptions options, OpenContext context) throws IOException {
        BlockNode fileNode = context.openChild(options, "file", context.flags());
        if (fileNode == null) {
            throw new BlockException("A block device must be specified for \"file\"", BlockException.EINVAL);
        }
        for (String ignored : List.of(
                "lazy-refcounts",
                "pass-discard-request",
                "pass-discard-snapshot",
                "pass-discard-other",
                "overlap-check",
                "cache-size",
                "l2-cache-size",
                "l2-cache-entry-size",
                "refcount-cache-size",
                "cache-clean-interval")) {
            options.get(ignored);
        }
        if (options.get("data-file") != null) {
            throw new BlockException("Strata does not support qcow2 external data files", BlockException.ENOTSUP);
        }
        boolean readOnly = context.readOnly() || fileNode.readOnly();
        ImageFile file = new ImageFile(fileNode);
        Qcow2Header header = Qcow2Header.read(file::read, file.length());
        header.validate(file.length());
        checkFeatures(header, readOnly);
        if ((header.autoclearFeatures() & Qcow2Header.AUTOCLEAR_DATA_FILE_RAW) != 0
                && (header.incompatibleFeatures() & Qcow2Header.INCOMPAT_DATA_FILE) == 0
                && !context.flags().noIo()) {
            // the bit says guest data lives at the same offsets of a data file the image does not
            // have: reading the image's own clusters would return the wrong data (QEMU refuses too,
            // except for qemu-img info's open)
            throw new BlockException("data-file-raw requires a data file", BlockException.EINVAL);
        }
        if (header.isDirty() && !readOnly) {
            // the repair rewrites refcounts (and may grow the file) behind this node's back: start
            // over from the header, keeping nothing read before it
            Qcow2DirtyRepair.repair(fileNode);
            file = new ImageFile(fileNode);
            header = Qcow2Header.read(file::read, file.length());
            header.validate(file.length());
            checkFeatures(header, readOnly);
            if (header.isDirty()) {
                throw new BlockException(
                        "Could not repair dirty image: the check left the dirty bit set", BlockException.EIO);
            }
        }

        // as QEMU's open: every bitmap the image lists is read, and a broken directory, table or
        // entry refuses the image; the node takes the bitmaps over once it exists
        Qcow2BitmapStore bitmapStore =
                new Qcow2BitmapStore(file, header.clusterSize(), Qcow2CheckBitmaps.readDirectory(file, header));
        List<StoredBitmap> loaded =
                bitmapStore.load(header.size(), Runtime.getRuntime().maxMemory() / 4);
        List<String> warnings = Qcow2CheckBitmaps.openWarnings(header);

        long[] l1 = ClusterMap.loadL1(file, header);
        ClusterMap map = new ClusterMap(file, header, l1, L2_CACHE_BYTES);
        Refcounts refcounts = null;
        if (!readOnly) {
            long l1Bytes = (long) header.l1Size() * 8;
            refcounts = new Refcounts(file, header, Refcounts.loadTable(file, header), new long[] {
                header.l1TableOffset(), (l1Bytes + header.clusterSize() - 1) & -header.clusterSize()
            });
        }

        BlockNode backing;
        if (options.has("backing")) {
            backing = options.get("backing") == null
                    ? null
                    : context.openChild(options, "backing", context.flags().asReadOnly());
        } else if (header.backingFile() != null) {
            backing = context.openBackingImage(
                    Path.of(fileNode.filename()),
                    header.backingFile(),
                    header.backingFormat().orElse(null));
        } else {
            backing = null;
        }

        if (!readOnly && (header.autoclearFeatures() & ~KNOWN_AUTOCLEAR) != 0) {
            // the spec lets a writer touch an image with unknown autoclear bits only after clearing them
            header = header.withAutoclearFeatures(header.autoclearFeatures() & KNOWN_AUTOCLEAR);
            file.writeHeader(header);
        }
        return new Qcow2Driver(
                fileNode, file, backing, readOnly, header, map, refcounts, bitmapStore, loaded, warnings);
    }

    private static void checkFeatures(Qcow2Header h, boolean readOnly) throws BlockException {
        if (h.cryptMethod() != 0) {
            throw new BlockException(
                    "Strata does not support encrypted qcow2 images (encryption method " + h.cryptMethod() + ")",
                    BlockException.ENOTSUP);
        }
        var unknown = h.unsupportedFeatures(Qcow2Header.INCOMPAT_KNOWN);
        if (unknown.isPresent()) {
            throw new BlockException(unknown.get(), BlockException.ENOTSUP);
        }
        if (h.hasExternalDataFile()) {
            throw new BlockException(
                    "Strata does not support qcow2 images with an external data file", BlockException.ENOTSUP);
        }
        if (h.hasExtendedL2()) {
            throw new BlockException(
                    "Strata does not support qcow2 images with extended L2 entries", BlockException.ENOTSUP);
        }
        if ((h.incompatibleFeatures() & ~SUPPORTED_INCOMPAT) != 0) {
            throw new BlockException(h.unsupportedFeatures(SUPPORTED_INCOMPAT).orElseThrow(), BlockException.ENOTSUP);
        }
        if (h.isCorrupt() && !readOnly) {
            throw new BlockException("qcow2: Image is corrupt; cannot be opened read/write", BlockException.EPERM);
        }
    }

    /** Format probe: qcow2 images start with "QFI\xfb". */
    public static int probe(ByteBuffer head, String filename) {
        return head.remaining() >= 4 && head.getInt(0) == Qcow2Header.MAGIC ? 100 : 0;
    }

    @Override
    public String format() {
        return "qcow2";
    }

    @Override
    public long length() {
        return size;
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public int clusterSize() {
        return clusterSize;
    }

    /** The header as opened, with size and L1 table as the last resize left them (the refcount table may since have moved). */
    public Qcow2Header header() {
        return header;
    }

    @Override
    public Map<String, BlockNode> children() {
        Map<String, BlockNode> m = new LinkedHashMap<>();
        m.put("file", fileNode);
        if (backing != null) {
            m.put("backing", backing);
        }
        return m;
    }

    @Override
    public Map<String, Object> formatSpecific() {
        Map<String, Object> m = new LinkedHashMap<>();
        boolean v3 = header.version() >= 3;
        m.put("compat", v3 ? "1.1" : "0.10");
        m.put("compression-type", header.compressionTypeName());
        if (v3) {
            m.put("lazy-refcounts", header.lazyRefcounts());
        }
        m.put("refcount-bits", header.refcountBits());
        List<Qcow2CheckBitmaps.Bitmap> bitmaps = bitmapStore.directory();
        if (!bitmaps.isEmpty()) {
            // only a version 3 image lists bitmaps (readDirectory)
            m.put("bitmaps", bitmapList(bitmaps));
        }
        if (v3) {
            m.put("corrupt", header.isCorrupt());
            m.put("extended-l2", header.hasExtendedL2());
        }
        return m;
    }

    @Override
    public List<String> openWarnings() {
        return openWarnings;
    }

    /** qemu-img info's "bitmaps": each bitmap's name, granularity and flags (in-use, auto). */
    private static List<Map<String, Object>> bitmapList(List<Qcow2CheckBitmaps.Bitmap> bitmaps) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (Qcow2CheckBitmaps.Bitmap b : bitmaps) {
            List<String> flags = new ArrayList<>();
            if (b.inUse()) {
                flags.add("in-use");
            }
            if (b.auto()) {
                flags.add("auto");
            }
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("name", b.name());
            m.put("granularity", 1L << b.granularityBits());
            m.put("flags", flags);
            out.add(m);
        }
        return out;
    }

    @Override
    public long allocatedFileSize() throws IOException {
        return fileNode.driver().allocatedFileSize();
    }

    // ---------------------------------------------------------------------------------------
    // persistent bitmaps, handed on to the store under the exclusive lock

    @Override
    public boolean storesBitmaps() {
        return true;
    }

    @Override
    public boolean supportsPersistentBitmaps() {
        return header.version() >= 3;
    }

    @Override
    public List<StoredBitmap> storedBitmaps() {
        List<StoredBitmap> b = loadedBitmaps;
        loadedBitmaps = List.of();
        return b;
    }

    @Override
    public void trackStoredBitmaps() throws IOException {
        changeBitmaps(bitmapStore::markInUse);
    }

    @Override
    public void checkNewPersistentBitmap(String name, long granularity, List<String> persistentNames)
            throws BlockException {
        Qcow2BitmapStore.checkNew(header, size, name, granularity, persistentNames);
    }

    @Override
    public void removeStoredBitmap(String name) throws IOException {
        changeBitmaps(h -> bitmapStore.remove(h, refcounts, name));
    }

    @Override
    public void storeBitmaps(List<StoredBitmap> bitmaps) throws IOException {
        changeBitmaps(h -> bitmapStore.store(h, refcounts, bitmaps));
    }

    /**
     * QEMU's change of a qcow2 image's backing file (qemu-img rebase, create -u): the header names
     * {@code backingFile} (null for none) with {@code backingFormat} (null for none). The header
     * cluster is written whole, the rest of it zeroed, and flushed; the image's data and tables are
     * not touched, so a torn write can leave only the old or the new name where a sector boundary
     * falls inside the name (as with QEMU). The backing node already open stays as it is.
     *
     * @throws BlockException EINVAL for a name too long, ENOSPC when the header does not fit its cluster
     */
    public void changeBackingFile(String backingFile, String backingFormat) throws IOException {
        if (readOnly) {
            throw new BlockException("Image is read-only", BlockException.EACCES);
        }
        lock.writeLock().lock();
        try {
            Qcow2Header updated = header.withBackingFile(backingFile, backingFormat);
            byte[] encoded;
            try {
                encoded = updated.encode();
            } catch (BlockException e) {
                // QEMU refuses an over-long name as EINVAL and a header that does not fit as ENOSPC
                throw e.errno() == BlockException.ENOSPC
                        ? new BlockException("No space left in the file header", BlockException.ENOSPC)
                        : new BlockException("Invalid argument", BlockException.EINVAL);
            }
            byte[] cluster = new byte[header.clusterSize()];
            System.arraycopy(encoded, 0, cluster, 0, encoded.length);
            file.write(0, cluster, 0, cluster.length);
            file.flush();
            header = updated;
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** A change of the bitmap directory, which returns the header as it then is. */
    @FunctionalInterface
    private interface BitmapChange {
        Qcow2Header apply(Qcow2Header h) throws IOException;
    }

    private void changeBitmaps(BitmapChange change) throws IOException {
        if (readOnly) {
            return;
        }
        lock.writeLock().lock();
        try {
            header = change.apply(header);
        } finally {
            lock.writeLock().unlock();
        }
    }

    // ---------------------------------------------------------------------------------------
    // guest I/O, handed on

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        reader.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        writer.write(offset, src);
    }

    /**
     * The file child's writeback (data clusters, and metadata already written through); metadata
     * waiting in write-back ({@link DeferredMetadata}) reaches the file only at {@link #flush}.
     */
    @Override
    public void startWriteback() throws IOException {
        fileNode.driver().startWriteback();
    }

    @Override
    public HostRun hostRun(long offset, long length) throws IOException {
        return reader.hostRun(offset, length);
    }

    @Override
    public boolean writeHost(long offset, HostRun run) throws IOException {
        writer.writeHost(offset, run);
        return true;
    }

    /**
     * Writes one whole guest cluster compressed, packed into host clusters by
     * {@link Refcounts#allocateBytes}; falls back to an ordinary write when compression does not
     * save at least one byte. The old entry's reference is dropped after the new entry is written.
     */
    @Override
    public boolean writeCompressed(long offset, ByteBuffer src) throws IOException {
        if (readOnly) {
            throw new BlockException("Cannot write to a read-only node", BlockException.EPERM);
        }
        return writer.writeCompressed(offset, src);
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        zeroDiscard.writeZeroes(offset, length, mayUnmap);
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        zeroDiscard.discard(offset, length);
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        return reader.blockStatus(offset, length);
    }

    /**
     * qemu-img's {@code preallocation=metadata} of a new image ({@link Qcow2Writer#preallocateMetadata}):
     * then the file is grown (sparsely, as qemu-img's ftruncate) over the last data cluster and flushed.
     */
    void preallocateMetadata() throws IOException {
        long end = writer.preallocateMetadata();
        flush();
        if (file.length() < end) {
            file.truncate(end);
        }
        file.flush();
    }

    // ---------------------------------------------------------------------------------------
    // resize

    /** Changes the virtual size as QEMU 7.2 does ({@link Qcow2Resize}), under the exclusive lock. */
    @Override
    public void truncate(long newLength) throws IOException {
        if (readOnly) {
            throw new BlockException("Image is read-only", BlockException.EACCES);
        }
        lock.writeLock().lock();
        try {
            // a resize reads and rewrites tables behind the caches: nothing may wait
            file.deferred().writeBack();
            header = new Qcow2Resize(this, file, map, refcounts, backing, header).resize(size, newLength);
            size = header.size();
        } finally {
            lock.writeLock().unlock();
        }
    }

    /** Sets the length requests are measured against while a resize runs (exclusive lock held). */
    void setLengthForResize(long newLength) {
        size = newLength;
    }

    /** Drops the entries of clusters [from, to) and frees what they held (a shrink's discard). */
    void dropEntries(long from, long to) throws IOException {
        zeroDiscard.dropEntries(from, to);
    }

    @Override
    public void flush() throws IOException {
        if (!readOnly) {
            writeBackMetadata();
            file.flush();
        }
    }

    private void writeBackMetadata() throws IOException {
        lock.writeLock().lock();
        try {
            file.deferred().writeBack();
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public void setMetadataWriteback(boolean on) throws IOException {
        if (readOnly) {
            return;
        }
        lock.writeLock().lock();
        try {
            file.deferred().set(on);
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public void close() throws IOException {
        writer.close();
        reader.close();
        flush();
    }
}
