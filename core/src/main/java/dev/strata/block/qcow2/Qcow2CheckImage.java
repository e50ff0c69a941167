package dev.strata.block.qcow2;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * A qcow2 image opened for checking ({@link Qcow2CheckOpen} decides whether it can be): its file,
 * its header, the active L1 table and the refcount table held in memory, and nothing else trusted.
 *
 * <p>Every read is bounded: offsets come from an untrusted file, so reads never go past the end of
 * the file (the missing part reads as zeros, as QEMU's file driver returns it) and never allocate
 * more than one cluster at a time. The active L1 table is kept only up to the end of the file,
 * since entries past it read as zero anyway.
 *
 * <p>Stored refcounts are read through a small refcount block cache; repairs update them in that
 * cache and {@link #flushRefcounts} writes the dirty blocks back. Every other write goes straight
 * to the file.
 */
final class Qcow2CheckImage implements Closeable {
    static final long L1E_OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    static final long L1E_RESERVED_MASK = 0x7f00_0000_0000_01ffL;
    static final long L2E_OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    static final long L2E_STD_RESERVED_MASK = 0x3f00_0000_0000_01feL;
    static final long REFT_OFFSET_MASK = 0xffff_ffff_ffff_fe00L;
    static final long REFT_RESERVED_MASK = 0x1ffL;
    static final long OFLAG_COPIED = 1L << 63;
    static final long OFLAG_COMPRESSED = 1L << 62;
    static final long OFLAG_ZERO = 1L;
    static final long INCOMPAT_MASK = Qcow2Header.INCOMPAT_KNOWN;
    static final long AUTOCLEAR_MASK = Qcow2Header.AUTOCLEAR_BITMAPS | Qcow2Header.AUTOCLEAR_DATA_FILE_RAW;
    static final int MAX_BITMAPS = 65535;
    static final long MAX_BITMAP_DIRECTORY_SIZE = 1024L * MAX_BITMAPS;

    private static final int REFBLOCK_CACHE_ENTRIES = 16;
    /** QEMU's BDRV_MAX_LENGTH: requests reaching past it fail with EIO before touching the file. */
    static final long MAX_REQUEST_END = 0x7fff_ffff_c000_0000L;

    private static final byte[] ZEROS = new byte[1 << 16];

    /**
     * Counts the writes of a repair, so a test can make every write from the n-th on fail as if the
     * process had been killed there ({@link SimulatedCrash}).
     */
    static final class Writes {
        static final Writes UNLIMITED = new Writes(Long.MAX_VALUE);

        private final long limit;
        private long count;

        Writes(long limit) {
            this.limit = limit;
        }

        synchronized void next() {
            if (count >= limit) {
                throw new SimulatedCrash();
            }
            count++;
        }

        synchronized long count() {
            return count;
        }
    }

    /** The test hook's "process killed": an Error, so that nothing on the way catches it. */
    static final class SimulatedCrash extends Error {
        private static final long serialVersionUID = 1L;

        SimulatedCrash() {
            super("simulated crash", null, false, false);
        }
    }

    // set at open, never changed
    final String filename;
    /** The image's file node's driver: owned by the caller, which closes it. */
    final BlockDriver file;

    final boolean writable;
    final int clusterBits;
    final int clusterSize;
    final int refcountOrder;
    final boolean extendedL2;
    final boolean hasDataFile;
    final int l2EntryBytes;
    final int l2Entries;
    final int csizeShift;
    final long csizeMask;
    final long clusterOffsetMask;
    final long virtualSize;
    final int l1Size;
    final long l1TableOffset;
    final int version;
    final Qcow2CheckLog log;
    private final Writes writes;

    // set at open; the refcount table changes when a rebuild installs a new one
    Qcow2Header header;
    final long[] l1Table;
    long[] reftable;
    long reftableOffset;
    /** The bitmaps extension, or null when absent or ignored (autoclear bit clear). */
    Qcow2Header.BitmapsExtension bitmaps;
    /** The bitmaps extension is present but its autoclear bit is clear: repair drops it, as QEMU does. */
    boolean staleBitmapsExtension;

    // guarded by the single checking thread
    private long fileLength;
    private boolean signaledCorruption;
    private final Map<Long, byte[]> refblockCache = new LinkedHashMap<>(32, 0.75f, true);
    private final Set<Long> dirtyRefblocks = new HashSet<>();

    Qcow2CheckImage(
            String filename, BlockDriver file, boolean writable, Qcow2Header header, Qcow2CheckLog log, Writes writes)
            throws IOException {
        this.writes = writes;
        this.filename = filename;
        this.file = file;
        this.writable = writable;
        this.header = header;
        this.log = log;
        this.fileLength = file.length();
        this.version = header.version();
        this.clusterBits = header.clusterBits();
        this.clusterSize = 1 << clusterBits;
        this.refcountOrder = header.refcountOrder();
        this.extendedL2 = header.hasExtendedL2();
        this.hasDataFile = header.hasExternalDataFile();
        this.l2EntryBytes = extendedL2 ? 16 : 8;
        this.l2Entries = clusterSize / l2EntryBytes;
        this.csizeShift = 62 - (clusterBits - 8);
        this.csizeMask = (1L << (clusterBits - 8)) - 1;
        this.clusterOffsetMask = (1L << csizeShift) - 1;
        this.virtualSize = header.size();
        this.l1Size = header.l1Size();
        this.l1TableOffset = header.l1TableOffset();
        this.reftableOffset = header.refcountTableOffset();
        String prefix = "Could not open '" + filename + "': ";
        try {
            this.l1Table = readTable(l1TableOffset, Integer.toUnsignedLong(l1Size));
        } catch (IOException e) {
            throw new BlockException(prefix + "Could not read L1 table: Input/output error", BlockException.EIO);
        }
        try {
            this.reftable = readTable(
                    reftableOffset, Integer.toUnsignedLong(header.refcountTableClusters()) << (clusterBits - 3));
        } catch (IOException e) {
            throw new BlockException(
                    prefix + "Could not initialize refcount handling: Input/output error", BlockException.EIO);
        }
    }

    /** Reads a table of big-endian 64-bit entries, keeping only the part that lies inside the file. */
    private long[] readTable(long offset, long entries) throws IOException {
        checkRequest(offset, entries * 8);
        long inFile = offset >= fileLength ? 0 : Math.min(entries, (fileLength - offset + 7) / 8);
        long[] t = new long[(int) inFile];
        ByteBuffer buf = ByteBuffer.allocate(Math.min(clusterSize, 1 << 16));
        for (int i = 0; i < t.length; ) {
            int n = (int) Math.min(buf.capacity() / 8, t.length - i);
            buf.clear().limit(n * 8);
            read(offset + (long) i * 8, buf);
            buf.flip();
            for (int j = 0; j < n; j++) {
                t[i + j] = buf.getLong();
            }
            i += n;
        }
        return t;
    }

    // ---------------------------------------------------------------------------------------
    // file access

    long fileLength() {
        return fileLength;
    }

    /**
     * Reads {@code dst.remaining()} bytes at {@code offset}; what lies past the end of the file
     * reads as zeros. Offsets beyond what a file can hold are an I/O error, as in QEMU.
     */
    void read(long offset, ByteBuffer dst) throws IOException {
        checkRequest(offset, dst.remaining());
        if (offset < fileLength) {
            int inFile = (int) Math.min(dst.remaining(), fileLength - offset);
            file.read(offset, dst.slice(dst.position(), inFile));
            dst.position(dst.position() + inFile);
        }
        while (dst.hasRemaining()) {
            dst.put(ZEROS, 0, Math.min(ZEROS.length, dst.remaining()));
        }
    }

    /** QEMU refuses requests that reach past its maximum length with EIO. */
    static void checkRequest(long offset, long length) throws BlockException {
        if (offset < 0 || offset > MAX_REQUEST_END || length > MAX_REQUEST_END - offset) {
            throw new BlockException("request outside the addressable range", BlockException.EIO);
        }
    }

    byte[] readBytes(long offset, int length) throws IOException {
        byte[] b = new byte[length];
        read(offset, ByteBuffer.wrap(b));
        return b;
    }

    void write(long offset, byte[] data, int from, int length) throws IOException {
        if (!writable) {
            throw new BlockException("image opened read-only", BlockException.EPERM);
        }
        writes.next();
        file.write(offset, ByteBuffer.wrap(data, from, length));
        fileLength = Math.max(fileLength, offset + length);
    }

    void writeLong(long offset, long value) throws IOException {
        byte[] b = ByteBuffer.allocate(8)
                .order(ByteOrder.BIG_ENDIAN)
                .putLong(value)
                .array();
        write(offset, b, 0, 8);
    }

    /** Grows the file (sparse) to at least {@code length} bytes. */
    void growTo(long length) throws IOException {
        if (length > fileLength) {
            write(length - 1, new byte[1], 0, 1);
        }
    }

    void sync() throws IOException {
        if (writable) {
            file.flush();
        }
    }

    // ---------------------------------------------------------------------------------------
    // stored refcounts

    private long reftableEntries = -1;

    long reftableEntry(long index) {
        return index < reftable.length ? reftable[(int) index] : 0;
    }

    /**
     * The refcount the image stores for {@code cluster} (QEMU's qcow2_get_refcount). A refcount
     * block at an unaligned offset is an I/O error, reported once as QEMU reports the corruption.
     */
    long storedRefcount(long cluster) throws IOException {
        int blockBits = clusterBits + 3 - refcountOrder;
        long index = cluster >>> blockBits;
        if (index >= storedReftableSize()) {
            return 0;
        }
        long offset = reftableEntry(index) & REFT_OFFSET_MASK;
        if (offset == 0) {
            return 0;
        }
        if ((offset & (clusterSize - 1)) != 0) {
            signalCorruption("Refblock offset 0x" + Long.toHexString(offset) + " unaligned (reftable index: "
                    + hex(index) + ")");
            throw new BlockException("unaligned refcount block", BlockException.EIO);
        }
        byte[] block = refblock(offset);
        return Qcow2CheckRefcounts.decode(block, (int) (cluster & ((1L << blockBits) - 1)), refcountOrder);
    }

    /** Changes a stored refcount in the cache; the caller flushes. The block must already exist. */
    void setStoredRefcount(long cluster, long value) throws IOException {
        int blockBits = clusterBits + 3 - refcountOrder;
        long index = cluster >>> blockBits;
        long offset = index < storedReftableSize() ? reftableEntry(index) & REFT_OFFSET_MASK : 0;
        if (offset == 0 || (offset & (clusterSize - 1)) != 0) {
            throw new BlockException("no valid refcount block for cluster " + cluster, BlockException.EIO);
        }
        byte[] block = refblock(offset);
        Qcow2CheckRefcounts.encode(block, (int) (cluster & ((1L << blockBits) - 1)), refcountOrder, value);
        dirtyRefblocks.add(offset);
    }

    /** Number of entries of the refcount table as the header sizes it. */
    long storedReftableSize() {
        if (reftableEntries < 0) {
            reftableEntries = Integer.toUnsignedLong(header.refcountTableClusters()) << (clusterBits - 3);
        }
        return reftableEntries;
    }

    /** Installs a new refcount table after a rebuild has written it and switched the header. */
    void installReftable(long offset, long[] table, long entries, Qcow2Header newHeader) {
        refblockCache.clear();
        dirtyRefblocks.clear();
        reftable = table;
        reftableOffset = offset;
        reftableEntries = entries;
        header = newHeader;
    }

    private byte[] refblock(long offset) throws IOException {
        byte[] b = refblockCache.get(offset);
        if (b != null) {
            return b;
        }
        if (refblockCache.size() >= REFBLOCK_CACHE_ENTRIES) {
            Long eldest = refblockCache.keySet().iterator().next();
            writeBackRefblock(eldest);
            refblockCache.remove(eldest);
        }
        b = readBytes(offset, clusterSize);
        refblockCache.put(offset, b);
        return b;
    }

    private void writeBackRefblock(long offset) throws IOException {
        if (dirtyRefblocks.remove(offset)) {
            byte[] b = refblockCache.get(offset);
            write(offset, b, 0, b.length);
        }
    }

    /** Writes every changed refcount block back and syncs, so later repairs can rely on them. */
    void flushRefcounts() throws IOException {
        for (Long offset : new ArrayList<>(dirtyRefblocks)) {
            writeBackRefblock(offset);
        }
        sync();
    }

    /**
     * Reports a corruption QEMU would signal. Strata's check never marks the image corrupt (it is
     * about to repair or report it), so the message is the non-fatal one in both modes.
     */
    void signalCorruption(String message) {
        if (signaledCorruption) {
            return;
        }
        signaledCorruption = true;
        log.message("qcow2: Image is corrupt: " + message + "; further non-fatal corruption events will be suppressed");
    }

    // ---------------------------------------------------------------------------------------
    // L2 entries

    /** The standard cluster types QEMU's qcow2_get_cluster_type distinguishes. */
    enum ClusterType {
        UNALLOCATED,
        ZERO_PLAIN,
        ZERO_ALLOC,
        NORMAL,
        COMPRESSED
    }

    ClusterType clusterType(long entry) {
        if ((entry & OFLAG_COMPRESSED) != 0) {
            return ClusterType.COMPRESSED;
        }
        if ((entry & OFLAG_ZERO) != 0 && !extendedL2) {
            return (entry & L2E_OFFSET_MASK) != 0 ? ClusterType.ZERO_ALLOC : ClusterType.ZERO_PLAIN;
        }
        if ((entry & L2E_OFFSET_MASK) == 0) {
            return hasDataFile && (entry & OFLAG_COPIED) != 0 ? ClusterType.NORMAL : ClusterType.UNALLOCATED;
        }
        return ClusterType.NORMAL;
    }

    /** Host offset of a compressed cluster's data. */
    long compressedOffset(long entry) {
        return entry & clusterOffsetMask;
    }

    /** Bytes a compressed cluster's data spans from {@link #compressedOffset}. */
    long compressedSize(long entry) {
        long sectors = ((entry >>> csizeShift) & csizeMask) + 1;
        return sectors * 512 - (compressedOffset(entry) & 511);
    }

    /** QEMU's size_to_clusters. */
    long sizeToClusters(long bytes) {
        return (bytes + clusterSize - 1) >>> clusterBits;
    }

    /** C's {@code %#x}: "0" for zero, "0x..." otherwise. */
    static String hex(long v) {
        return v == 0 ? "0" : "0x" + Long.toHexString(v);
    }

    @Override
    public void close() throws IOException {
        if (writable) {
            flushRefcounts();
        }
    }
}
