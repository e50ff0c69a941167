package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import dev.strata.block.HostRun;
import dev.strata.block.qcow2.ClusterMap.Type;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.zip.Inflater;

/**
 * The read side of a {@link Qcow2Driver}: guest reads in runs that one kind of source serves (data
 * clusters, zero clusters, the backing node, compressed clusters one at a time), what a guest
 * cluster reads as for a copy-on-write, and block status.
 *
 * <p>Concurrency: reads and block status hold the shared side of the driver's metadata lock across
 * the lookup and the data I/O, so no cluster they use can be freed or reused meanwhile;
 * {@link #oldContent} runs under the caller's exclusive side. The pool of decompression buffers is
 * thread-safe, so concurrent readers each take their own.
 */
final class Qcow2Reader {
    /** Read-only zeros, for filling buffers that have no array and for zero writes. */
    static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(1 << 20).asReadOnlyBuffer();

    private static final int MAX_POOLED = 4;

    // set at open, never changed
    private final Qcow2Driver driver;
    private final BlockNode fileNode;
    private final ImageFile file;
    private final BlockNode backing;
    private final ClusterMap map;
    private final ReentrantReadWriteLock lock;
    private final int clusterBits;
    private final int clusterSize;
    private final int l2Entries;
    private final String hostFile;

    // thread-safe pool of decompression buffers
    private final ConcurrentLinkedQueue<Decompressor> decompressors = new ConcurrentLinkedQueue<>();

    private record Decompressor(byte[] src, byte[] dst, Inflater inflater) {}

    /** {@code driver} gives the current header (its compression type); the rest is the driver's. */
    Qcow2Reader(
            Qcow2Driver driver,
            BlockNode fileNode,
            ImageFile file,
            BlockNode backing,
            ClusterMap map,
            ReentrantReadWriteLock lock,
            Qcow2Header header) {
        this.driver = driver;
        this.fileNode = fileNode;
        this.file = file;
        this.backing = backing;
        this.map = map;
        this.lock = lock;
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
        this.l2Entries = map.l2Entries();
        this.hostFile = fileNode.filename();
    }

    void read(long offset, ByteBuffer dst) throws IOException {
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

    /**
     * Copy offload: where the data clusters at {@code offset} lie in the file child, for as many
     * bytes of {@code length} as are contiguous there; null unless the first cluster is a data
     * cluster of this layer. The lock covers the lookup only (the caller's gate keeps the node open;
     * a cluster in the range is only freed by a write to the range, which a copy-before-write or the
     * guest orders against this read, as QEMU's qcow2 does).
     */
    HostRun hostRun(long offset, long length) throws IOException {
        Run r;
        lock.readLock().lock();
        try {
            r = run(offset, length);
            if (r.type() != Type.NORMAL) {
                return null;
            }
            checkData(r);
        } finally {
            lock.readLock().unlock();
        }
        return fileNode.hostRun(r.host() + r.inCluster(), r.bytes());
    }

    /**
     * The longest run at a guest offset that one kind of source serves, at most {@code want}
     * bytes: its first entry and type, its first guest cluster and the offset in it, its length
     * in clusters and in bytes. Callers hold the lock.
     */
    private record Run(long entry, Type type, long cluster, int inCluster, int clusters, long bytes) {
        long host() {
            return entry & ClusterMap.OFFSET_MASK;
        }
    }

    private Run run(long pos, long want) throws IOException {
        long c = pos >>> clusterBits;
        int inCl = (int) (pos & (clusterSize - 1));
        int idx = (int) (c & (l2Entries - 1));
        byte[] t = map.l2((int) (c >>> map.l2Bits()));
        long e = t == null ? 0 : ClusterMap.entry(t, idx);
        Type type = ClusterMap.type(e);
        int clusters = runLength(t, idx, e, type, inCl, want);
        return new Run(e, type, c, inCl, clusters, Math.min((long) clusters * clusterSize - inCl, want));
    }

    /** Refuses a data run whose clusters are not where data may lie. */
    private void checkData(Run r) throws BlockException {
        map.checkDataCluster(r.entry(), r.cluster());
        file.checkInside("Data cluster run", r.host() + (long) (r.clusters() - 1) * clusterSize, 1);
    }

    /** Reads the longest run at {@code pos} that one kind of source serves; returns its length. */
    private int readRun(long pos, ByteBuffer dst) throws IOException {
        Run r = run(pos, dst.remaining());
        int n = (int) r.bytes();
        ByteBuffer part = dst.slice(dst.position(), n);
        switch (r.type()) {
            case UNALLOCATED -> readBacking(pos, part);
            case ZERO_PLAIN, ZERO_ALLOC -> fillZeros(part);
            case NORMAL -> {
                checkData(r);
                fileNode.debugEvent("read_aio");
                file.read(r.host() + r.inCluster(), part);
            }
            case COMPRESSED -> readCompressed(r.entry(), r.cluster(), r.inCluster(), part);
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
        Compression.decompress(driver.header().compressionType(), d.src, csize, d.dst, clusterSize, d.inflater);
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

    /** Fills {@code buf} with what guest cluster {@code c} reads as under entry {@code e}. */
    void oldContent(long e, long c, byte[] buf) throws IOException {
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
    // block status

    List<Extent> blockStatus(long offset, long length) throws IOException {
        List<Extent> out = new ArrayList<>();
        lock.readLock().lock();
        try {
            long pos = offset;
            long end = offset + length;
            while (pos < end) {
                Run r = run(pos, end - pos);
                long n = r.bytes();
                long host = r.host() + r.inCluster();
                Extent x = switch (r.type()) {
                    case UNALLOCATED -> Extent.of(pos, n, Extent.Kind.UNALLOCATED);
                    case ZERO_PLAIN -> Extent.of(pos, n, Extent.Kind.ZERO);
                    case ZERO_ALLOC -> new Extent(pos, n, Extent.Kind.ZERO, 0, host, hostFile);
                    case NORMAL -> new Extent(pos, n, Extent.Kind.DATA, 0, host, hostFile);
                    case COMPRESSED -> Extent.of(pos, n, Extent.Kind.DATA);
                };
                Extent.appendMerged(out, x);
                pos += n;
            }
        } finally {
            lock.readLock().unlock();
        }
        return out;
    }

    /** Ends the pooled decompressors' inflaters. */
    void close() {
        Decompressor d;
        while ((d = decompressors.poll()) != null) {
            d.inflater.end();
        }
    }
}
