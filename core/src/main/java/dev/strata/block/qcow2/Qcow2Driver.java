package dev.strata.block.qcow2;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.CompressedWriter;
import dev.strata.block.Extent;
import dev.strata.block.OpenContext;
import dev.strata.block.qcow2.ClusterMap.Type;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.zip.Deflater;
import java.util.zip.Inflater;

/**
 * The qcow2 format driver: guest I/O through the cluster map, allocation through the refcounts,
 * unallocated clusters read from the backing node.
 *
 * <p>Reads and writes of clusters that are already allocated (and, for writes, not shared) go
 * straight to their host clusters; everything that changes metadata (allocating writes, zero
 * writes, discards) runs as one step under an exclusive lock.
 *
 * <p>Concurrency: a read-write lock guards the metadata. Reads and in-place writes hold the
 * shared side across the lookup and the data I/O, so no cluster they use can be freed or reused
 * meanwhile; allocating writes, zero writes and discards hold the exclusive side from the lookup
 * through the refcount, data and L2 writes, so two writers never allocate the same guest cluster.
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
    /** Autoclear bits Strata keeps set on a read-write open: none yet (bitmaps are not interpreted). */
    static final long KNOWN_AUTOCLEAR = 0;

    private static final long SUPPORTED_INCOMPAT =
            Qcow2Header.INCOMPAT_DIRTY | Qcow2Header.INCOMPAT_CORRUPT | Qcow2Header.INCOMPAT_COMPRESSION;
    private static final int L2_CACHE_BYTES = 8 << 20;
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(1 << 20).asReadOnlyBuffer();
    private static final int MAX_POOLED = 4;

    // set at open, never changed
    private final BlockNode fileNode;
    private final ImageFile file;
    private final BlockNode backing;
    private final boolean readOnly;
    private final int clusterBits;
    private final int clusterSize;
    private final int l2Entries;
    private final ClusterMap map;
    private final Refcounts refcounts;
    private final String hostFile;

    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    // changed only by a resize, under the exclusive lock; volatile for length() and info
    private volatile long size;
    private volatile Qcow2Header header;
    // guarded by the exclusive lock
    private byte[] cowBuf;
    private byte[] compressBuf;
    private Deflater deflater;
    // thread-safe pool of decompression buffers
    private final ConcurrentLinkedQueue<Decompressor> decompressors = new ConcurrentLinkedQueue<>();

    private record Decompressor(byte[] src, byte[] dst, Inflater inflater) {}

    private Qcow2Driver(
            BlockNode fileNode,
            ImageFile file,
            BlockNode backing,
            boolean readOnly,
            Qcow2Header header,
            ClusterMap map,
            Refcounts refcounts) {
        this.fileNode = fileNode;
        this.file = file;
        this.backing = backing;
        this.readOnly = readOnly;
        this.header = header;
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
        this.l2Entries = map.l2Entries();
        this.size = header.size();
        this.map = map;
        this.refcounts = refcounts;
        this.hostFile = fileNode.filename();
    }

    /**
     * Opens from options: {@code file} (nested options or node-name), optional {@code backing}
     * (null for none, a node-name, or nested options); without {@code backing} the backing file
     * named in the image opens read-only, relative to the image's directory.
     */
    public static BlockDriver open(BlockOptions options, OpenContext context) throws IOException {
        BlockNode fileNode = context.openChild(options, "file", context.flags());
        if (fileNode == null) {
            throw new BlockException("Parameter 'file' is missing", BlockException.EINVAL);
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
            writeHeader(file, header);
        }
        return new Qcow2Driver(fileNode, file, backing, readOnly, header, map, refcounts);
    }

    private static void writeHeader(ImageFile file, Qcow2Header header) throws IOException {
        byte[] b = header.encode();
        file.write(0, b, 0, b.length);
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
        if (v3) {
            m.put("corrupt", header.isCorrupt());
            m.put("extended-l2", header.hasExtendedL2());
        }
        return m;
    }

    @Override
    public long allocatedFileSize() throws IOException {
        return fileNode.driver().allocatedFileSize();
    }

    // ---------------------------------------------------------------------------------------
    // reads

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        lock.readLock().lock();
        try {
            long pos = offset;
            while (dst.hasRemaining()) {
                int n = readRun(pos, dst);
                dst.position(dst.position() + n);
                pos += n;
            }
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Reads the longest run at {@code pos} that one kind of source serves; returns its length. */
    private int readRun(long pos, ByteBuffer dst) throws IOException {
        long c = pos >>> clusterBits;
        int inCl = (int) (pos & (clusterSize - 1));
        int l1i = (int) (c >>> map.l2Bits());
        int idx = (int) (c & (l2Entries - 1));
        byte[] t = map.l2(l1i);
        long e = t == null ? 0 : ClusterMap.entry(t, idx);
        Type type = ClusterMap.type(e);
        int clusters = runLength(t, idx, e, type, inCl, dst.remaining());
        int n = (int) Math.min((long) clusters * clusterSize - inCl, dst.remaining());
        ByteBuffer part = dst.slice(dst.position(), n);
        switch (type) {
            case UNALLOCATED -> readBacking(pos, part);
            case ZERO_PLAIN, ZERO_ALLOC -> fillZeros(part);
            case NORMAL -> {
                long host = e & ClusterMap.OFFSET_MASK;
                map.checkDataCluster(e, c);
                file.checkInside("Data cluster run", host + (long) (clusters - 1) * clusterSize, 1);
                fileNode.debugEvent("read_aio");
                file.read(host + inCl, part);
            }
            case COMPRESSED -> readCompressed(e, c, inCl, part);
        }
        return n;
    }

    /**
     * Clusters from {@code idx} in one table that read from one source: same type and, for data,
     * contiguous host clusters; compressed clusters go one at a time.
     */
    private int runLength(byte[] t, int idx, long e, Type type, int inCl, long want) {
        long needed = (want + inCl + clusterSize - 1) >>> clusterBits;
        int limit = (int) Math.min(l2Entries - idx, needed);
        if (t == null) {
            return limit;
        }
        if (type == Type.COMPRESSED) {
            return 1;
        }
        long nextHost = (e & ClusterMap.OFFSET_MASK) + clusterSize;
        int k = 1;
        while (k < limit) {
            long e2 = ClusterMap.entry(t, idx + k);
            if (ClusterMap.type(e2) != type) {
                break;
            }
            if (type == Type.NORMAL || type == Type.ZERO_ALLOC) {
                if ((e2 & ClusterMap.OFFSET_MASK) != nextHost) {
                    break;
                }
                nextHost += clusterSize;
            }
            k++;
        }
        return k;
    }

    private void readBacking(long pos, ByteBuffer part) throws IOException {
        if (backing == null) {
            fillZeros(part);
            return;
        }
        long backingLength = backing.length();
        int inBacking = (int) Math.max(0, Math.min(part.remaining(), backingLength - pos));
        if (inBacking > 0) {
            backing.read(pos, part.slice(part.position(), inBacking));
            part.position(part.position() + inBacking);
        }
        fillZeros(part);
    }

    private static void fillZeros(ByteBuffer b) {
        if (b.hasArray()) {
            Arrays.fill(b.array(), b.arrayOffset() + b.position(), b.arrayOffset() + b.limit(), (byte) 0);
            b.position(b.limit());
            return;
        }
        while (b.hasRemaining()) {
            b.put(ZEROS.duplicate().limit(Math.min(b.remaining(), ZEROS.capacity())));
        }
    }

    private void readCompressed(long e, long c, int inCl, ByteBuffer part) throws IOException {
        Decompressor d = takeDecompressor();
        try {
            decompressCluster(e, c, d);
            part.put(d.dst, inCl, part.remaining());
        } finally {
            giveBack(d);
        }
    }

    private void decompressCluster(long e, long c, Decompressor d) throws IOException {
        map.checkCompressed(e, c);
        int csize = map.compressedSize(e);
        file.read(map.compressedOffset(e), d.src, 0, csize);
        Compression.decompress(header.compressionType(), d.src, csize, d.dst, clusterSize, d.inflater);
    }

    private Decompressor takeDecompressor() {
        Decompressor d = decompressors.poll();
        // the stored size of a compressed cluster is at most 2^(cluster_bits-8) sectors
        return d != null ? d : new Decompressor(new byte[2 * clusterSize], new byte[clusterSize], new Inflater(true));
    }

    private void giveBack(Decompressor d) {
        if (decompressors.size() < MAX_POOLED) {
            decompressors.add(d);
        } else {
            d.inflater.end();
        }
    }

    // ---------------------------------------------------------------------------------------
    // writes

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        long pos = offset;
        while (src.hasRemaining()) {
            int n;
            lock.readLock().lock();
            try {
                n = writeInPlace(pos, src, null);
            } finally {
                lock.readLock().unlock();
            }
            if (n == 0) {
                lock.writeLock().lock();
                try {
                    n = writeAllocating(pos, src);
                } finally {
                    lock.writeLock().unlock();
                }
            }
            pos += n;
        }
    }

    /**
     * Writes the run of clusters at {@code pos} that may be overwritten in place (data clusters
     * with the COPIED flag, contiguous on the host); returns the bytes written, 0 when the first
     * cluster needs allocation.
     */
    private int writeInPlace(long pos, ByteBuffer src, byte[] table) throws IOException {
        long c = pos >>> clusterBits;
        int inCl = (int) (pos & (clusterSize - 1));
        int l1i = (int) (c >>> map.l2Bits());
        int idx = (int) (c & (l2Entries - 1));
        byte[] t = table != null ? table : map.l2(l1i);
        if (t == null) {
            return 0;
        }
        long e = ClusterMap.entry(t, idx);
        if (!ClusterMap.writableInPlace(e)) {
            return 0;
        }
        long needed = ((long) src.remaining() + inCl + clusterSize - 1) >>> clusterBits;
        int limit = (int) Math.min(l2Entries - idx, needed);
        long host = e & ClusterMap.OFFSET_MASK;
        int k = 1;
        while (k < limit) {
            long e2 = ClusterMap.entry(t, idx + k);
            if (!ClusterMap.writableInPlace(e2) || (e2 & ClusterMap.OFFSET_MASK) != host + (long) k * clusterSize) {
                break;
            }
            k++;
        }
        map.checkDataCluster(e, c);
        file.checkInside("Data cluster run", host + (long) (k - 1) * clusterSize, 1);
        int n = (int) Math.min((long) k * clusterSize - inCl, src.remaining());
        fileNode.debugEvent("write_aio");
        file.write(host + inCl, src.slice(src.position(), n));
        src.position(src.position() + n);
        return n;
    }

    /** The allocating write of the run at {@code pos}; runs under the exclusive lock. */
    private int writeAllocating(long pos, ByteBuffer src) throws IOException {
        long c = pos >>> clusterBits;
        int inCl = (int) (pos & (clusterSize - 1));
        int l1i = (int) (c >>> map.l2Bits());
        int idx = (int) (c & (l2Entries - 1));
        byte[] t = map.writableL2(l1i, refcounts);
        long e = ClusterMap.entry(t, idx);
        if (ClusterMap.writableInPlace(e)) {
            // another writer allocated it between our two lock holds
            return writeInPlace(pos, src, t);
        }
        byte[] buf = cowBuffer();
        if (ClusterMap.type(e) == Type.ZERO_ALLOC && (e & ClusterMap.COPIED) != 0) {
            // a preallocated zero cluster of our own: fill it, then drop the zero flag
            map.checkDataCluster(e, c);
            long host = e & ClusterMap.OFFSET_MASK;
            int n = Math.min(clusterSize - inCl, src.remaining());
            Arrays.fill(buf, (byte) 0);
            src.get(src.position(), buf, inCl, n);
            src.position(src.position() + n);
            file.write(host, buf, 0, clusterSize);
            ClusterMap.setEntry(t, idx, host | ClusterMap.COPIED);
            map.writeEntries(l1i, t, idx, idx + 1);
            return n;
        }

        long needed = ((long) src.remaining() + inCl + clusterSize - 1) >>> clusterBits;
        int limit = (int) Math.min(l2Entries - idx, needed);
        int k = 1;
        while (k < limit) {
            long e2 = ClusterMap.entry(t, idx + k);
            if (ClusterMap.writableInPlace(e2)
                    || (ClusterMap.type(e2) == Type.ZERO_ALLOC && (e2 & ClusterMap.COPIED) != 0)) {
                break;
            }
            k++;
        }
        fileNode.debugEvent("cluster_alloc");
        long[] run = refcounts.allocateRun(k);
        long host = run[0];
        k = (int) run[1];
        int n = (int) Math.min((long) k * clusterSize - inCl, src.remaining());
        int tail = k * clusterSize - inCl - n;

        // 1. data (refcounts are already raised; nothing points here yet)
        fileNode.debugEvent("write_aio");
        int srcPos = src.position();
        long w = host;
        int consumed = 0;
        int firstFull = 0;
        if (inCl > 0 || (k == 1 && tail > 0)) {
            oldContent(ClusterMap.entry(t, idx), c, buf);
            int take = Math.min(clusterSize - inCl, n);
            src.get(srcPos, buf, inCl, take);
            file.write(w, buf, 0, clusterSize);
            consumed += take;
            w += clusterSize;
            firstFull = 1;
        }
        int lastFull = tail > 0 && k > firstFull ? k - 1 : k;
        if (lastFull > firstFull) {
            int bytes = (lastFull - firstFull) * clusterSize;
            file.write(w, src.slice(srcPos + consumed, bytes));
            consumed += bytes;
            w += bytes;
        }
        if (lastFull < k) {
            oldContent(ClusterMap.entry(t, idx + k - 1), c + k - 1, buf);
            src.get(srcPos + consumed, buf, 0, n - consumed);
            file.write(w, buf, 0, clusterSize);
        }
        src.position(srcPos + n);

        // 2. L2 entries, 3. then drop the references the old entries held
        long[] old = new long[k];
        for (int i = 0; i < k; i++) {
            old[i] = ClusterMap.entry(t, idx + i);
            ClusterMap.setEntry(t, idx + i, (host + (long) i * clusterSize) | ClusterMap.COPIED);
        }
        fileNode.debugEvent("l2_update");
        map.writeEntries(l1i, t, idx, idx + k);
        for (long o : old) {
            long[] r = map.referencedRange(o);
            if (r != null) {
                refcounts.free(r[0], r[1]);
            }
        }
        return n;
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
        int len = src.remaining();
        // the image's last cluster may be given short (up to the end of the image or of the data)
        boolean whole = len == clusterSize || (len < clusterSize && offset + clusterSize > size);
        if ((offset & (clusterSize - 1)) != 0 || !whole || len == 0 || offset + len > size) {
            throw new BlockException(
                    "Compressed writes must cover one whole cluster (offset " + offset + ", length " + len + ")",
                    BlockException.EINVAL);
        }
        lock.writeLock().lock();
        try {
            byte[] buf = cowBuffer();
            src.get(src.position(), buf, 0, len);
            Arrays.fill(buf, len, clusterSize, (byte) 0);
            if (compressBuf == null) {
                compressBuf = new byte[clusterSize + 512];
                deflater = new Deflater(Deflater.DEFAULT_COMPRESSION, true);
            }
            // as QEMU: the compressed form must be smaller than the cluster by at least one byte
            int clen = Compression.compress(
                    header.compressionType(), buf, clusterSize, compressBuf, clusterSize - 1, deflater);
            if (clen >= 0) {
                writeCompressedLocked(offset >>> clusterBits, clen);
                src.position(src.position() + len);
                return true;
            }
        } finally {
            lock.writeLock().unlock();
        }
        write(offset, src);
        return false;
    }

    /** Stores {@code compressBuf[0, clen)} as guest cluster {@code c}; runs under the exclusive lock. */
    private void writeCompressedLocked(long c, int clen) throws IOException {
        int l1i = (int) (c >>> map.l2Bits());
        int idx = (int) (c & (l2Entries - 1));
        byte[] t = map.writableL2(l1i, refcounts);
        // 1. refcounts, 2. data, 3. L2 entry, 4. drop the reference the old entry held
        long host = refcounts.allocateBytes(clen);
        int stored = clen;
        if (host + clen > file.length()) {
            // as QEMU: keep the file a whole number of sectors, so sector-based readers of the last
            // compressed cluster stay inside it; the next packed cluster overwrites the padding
            stored = (int) (((host + clen + 511) & -512L) - host);
            Arrays.fill(compressBuf, clen, stored, (byte) 0);
        }
        fileNode.debugEvent("write_compressed");
        file.write(host, compressBuf, 0, stored);
        long extraSectors = ((host + clen - 1) >>> 9) - (host >>> 9);
        long old = ClusterMap.entry(t, idx);
        ClusterMap.setEntry(t, idx, map.compressedEntry(host, extraSectors));
        map.writeEntries(l1i, t, idx, idx + 1);
        long[] r = map.referencedRange(old);
        if (r != null) {
            refcounts.free(r[0], r[1]);
        }
    }

    private byte[] cowBuffer() {
        if (cowBuf == null) {
            cowBuf = new byte[clusterSize];
        }
        return cowBuf;
    }

    /** Fills {@code buf} with what guest cluster {@code c} reads as under entry {@code e}. */
    private void oldContent(long e, long c, byte[] buf) throws IOException {
        switch (ClusterMap.type(e)) {
            case UNALLOCATED -> readBacking(c << clusterBits, ByteBuffer.wrap(buf));
            case ZERO_PLAIN, ZERO_ALLOC -> Arrays.fill(buf, (byte) 0);
            case NORMAL -> {
                map.checkDataCluster(e, c);
                file.read(e & ClusterMap.OFFSET_MASK, buf, 0, clusterSize);
            }
            case COMPRESSED -> {
                Decompressor d = takeDecompressor();
                try {
                    decompressCluster(e, c, d);
                    System.arraycopy(d.dst, 0, buf, 0, clusterSize);
                } finally {
                    giveBack(d);
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // zero writes and discards

    /** A rule that maps an L2 entry to its replacement. */
    @FunctionalInterface
    private interface EntryRule {
        long apply(long entry);
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        long end = offset + length;
        long start = roundUp(offset);
        long alignedEnd = end == size ? roundUp(end) : end & -(long) clusterSize;
        if (start >= alignedEnd) {
            zeroPartial(offset, end);
            return;
        }
        zeroPartial(offset, start);
        if (header.version() < 3) {
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
            int n = (int) Math.min(ZEROS.capacity(), to - pos);
            write(pos, ZEROS.duplicate().limit(n));
            pos += n;
        }
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        long end = offset + length;
        long start = roundUp(offset);
        long alignedEnd = end == size ? roundUp(end) : end & -(long) clusterSize;
        if (start >= alignedEnd) {
            return;
        }
        boolean v3 = header.version() >= 3;
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

    /**
     * Allocates every L2 table and data cluster of an empty image (qemu-img's
     * {@code preallocation=metadata}) and returns the end of the last data cluster: the caller
     * grows the file to it sparsely, so the clusters read as zeros. Only for images being created.
     */
    long preallocateMetadata() throws IOException {
        lock.writeLock().lock();
        try {
            long clusters = (size + clusterSize - 1) >>> clusterBits;
            long end = file.length();
            long c = 0;
            while (c < clusters) {
                int l1i = (int) (c >>> map.l2Bits());
                int idx = (int) (c & (l2Entries - 1));
                byte[] t = map.writableL2(l1i, refcounts);
                long[] run = refcounts.allocateRun((int) Math.min(l2Entries - idx, clusters - c));
                long host = run[0];
                int count = (int) run[1];
                end = Math.max(end, host + (long) count * clusterSize);
                for (int i = 0; i < count; i++) {
                    ClusterMap.setEntry(t, idx + i, (host + (long) i * clusterSize) | ClusterMap.COPIED);
                }
                map.writeEntries(l1i, t, idx, idx + count);
                c += count;
            }
            return end;
        } finally {
            lock.writeLock().unlock();
        }
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
        rewriteEntries(from, to, e -> 0);
    }

    private long roundUp(long v) {
        return (v + clusterSize - 1) & -(long) clusterSize;
    }

    @Override
    public void flush() throws IOException {
        if (!readOnly) {
            file.flush();
        }
    }

    // ---------------------------------------------------------------------------------------
    // block status

    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        List<Extent> out = new ArrayList<>();
        lock.readLock().lock();
        try {
            long pos = offset;
            long end = offset + length;
            while (pos < end) {
                long c = pos >>> clusterBits;
                int inCl = (int) (pos & (clusterSize - 1));
                int l1i = (int) (c >>> map.l2Bits());
                int idx = (int) (c & (l2Entries - 1));
                byte[] t = map.l2(l1i);
                long e = t == null ? 0 : ClusterMap.entry(t, idx);
                Type type = ClusterMap.type(e);
                int clusters = runLength(t, idx, e, type, inCl, end - pos);
                long n = Math.min((long) clusters * clusterSize - inCl, end - pos);
                long host = e & ClusterMap.OFFSET_MASK;
                Extent x = switch (type) {
                    case UNALLOCATED -> Extent.of(pos, n, Extent.Kind.UNALLOCATED);
                    case ZERO_PLAIN -> Extent.of(pos, n, Extent.Kind.ZERO);
                    case ZERO_ALLOC -> new Extent(pos, n, Extent.Kind.ZERO, 0, host + inCl, hostFile);
                    case NORMAL -> new Extent(pos, n, Extent.Kind.DATA, 0, host + inCl, hostFile);
                    case COMPRESSED -> Extent.of(pos, n, Extent.Kind.DATA);
                };
                append(out, x);
                pos += n;
            }
        } finally {
            lock.readLock().unlock();
        }
        return out;
    }

    private static void append(List<Extent> out, Extent e) {
        if (!out.isEmpty()) {
            Extent last = out.getLast();
            boolean hostContiguous =
                    last.hostOffset() < 0 ? e.hostOffset() < 0 : e.hostOffset() == last.hostOffset() + last.length();
            if (last.end() == e.offset() && last.kind() == e.kind() && hostContiguous) {
                out.set(
                        out.size() - 1,
                        new Extent(
                                last.offset(),
                                last.length() + e.length(),
                                last.kind(),
                                0,
                                last.hostOffset(),
                                last.hostFile()));
                return;
            }
        }
        out.add(e);
    }

    @Override
    public void close() throws IOException {
        if (deflater != null) {
            deflater.end();
        }
        Decompressor d;
        while ((d = decompressors.poll()) != null) {
            d.inflater.end();
        }
        flush();
    }
}
