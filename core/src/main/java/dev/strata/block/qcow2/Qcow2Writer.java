package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.HostRun;
import dev.strata.block.qcow2.ClusterMap.Type;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.zip.Deflater;

/**
 * The data writes of a {@link Qcow2Driver}: in place where the clusters are already ours, else
 * allocating (with copy-on-write of the head and tail of a partly written cluster), compressed
 * writes packed by {@link Refcounts#allocateBytes}, and the preallocation of a new image.
 *
 * <p>Concurrency: a write first tries in place under the shared side of the driver's metadata lock,
 * held across the lookup and the data I/O; a run that needs allocation is done under the exclusive
 * side, from the lookup through the refcount, data and L2 writes, so two writers never allocate the
 * same guest cluster (and looks again, since another writer may have allocated it between the two
 * holds). A compressed write holds the exclusive side from the copy into the buffer through the
 * L2 write (a fallback to an ordinary write comes after it is released), preallocation throughout.
 * The copy and compression buffers are guarded by the exclusive side.
 *
 * <p>Crash consistency: allocating and compressed writes follow the order in {@link Qcow2Driver}:
 * refcounts raised, then data, then the L2 entries, then the old entries' references dropped.
 */
final class Qcow2Writer {
    // set at open, never changed
    private final Qcow2Driver driver;
    private final Qcow2Reader reader;
    private final BlockNode fileNode;
    private final ImageFile file;
    private final ClusterMap map;
    private final Refcounts refcounts;
    private final ReentrantReadWriteLock lock;
    private final int clusterBits;
    private final int clusterSize;
    private final int l2Entries;

    // guarded by the exclusive lock
    private byte[] cowBuf;
    private byte[] compressBuf;
    private Deflater deflater;

    /**
     * {@code driver} gives the current length and header, {@code reader} the old content of a
     * cluster written in part; the rest is the driver's.
     */
    Qcow2Writer(
            Qcow2Driver driver,
            Qcow2Reader reader,
            BlockNode fileNode,
            ImageFile file,
            ClusterMap map,
            Refcounts refcounts,
            ReentrantReadWriteLock lock,
            Qcow2Header header) {
        this.driver = driver;
        this.reader = reader;
        this.fileNode = fileNode;
        this.file = file;
        this.map = map;
        this.refcounts = refcounts;
        this.lock = lock;
        this.clusterBits = header.clusterBits();
        this.clusterSize = header.clusterSize();
        this.l2Entries = map.l2Entries();
    }

    void write(long offset, ByteBuffer src) throws IOException {
        write(offset, WritePayload.of(src));
    }

    /** Copy offload: stores the bytes of {@code run} as {@link #write} stores a buffer's. */
    void writeHost(long offset, HostRun run) throws IOException {
        write(offset, WritePayload.of(run));
    }

    private void write(long offset, WritePayload src) throws IOException {
        long pos = offset;
        while (src.remaining() > 0) {
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
    private int writeInPlace(long pos, WritePayload src, byte[] table) throws IOException {
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
        src.write(file, host + inCl, 0, n);
        src.advance(n);
        return n;
    }

    /** The allocating write of the run at {@code pos}; runs under the exclusive lock. */
    private int writeAllocating(long pos, WritePayload src) throws IOException {
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
            src.copy(0, buf, inCl, n);
            src.advance(n);
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
        long w = host;
        int consumed = 0;
        int firstFull = 0;
        if (inCl > 0 || (k == 1 && tail > 0)) {
            reader.oldContent(ClusterMap.entry(t, idx), c, buf);
            int take = Math.min(clusterSize - inCl, n);
            src.copy(0, buf, inCl, take);
            file.write(w, buf, 0, clusterSize);
            consumed += take;
            w += clusterSize;
            firstFull = 1;
        }
        int lastFull = tail > 0 && k > firstFull ? k - 1 : k;
        if (lastFull > firstFull) {
            int bytes = (lastFull - firstFull) * clusterSize;
            src.write(file, w, consumed, bytes);
            consumed += bytes;
            w += bytes;
        }
        if (lastFull < k) {
            reader.oldContent(ClusterMap.entry(t, idx + k - 1), c + k - 1, buf);
            src.copy(consumed, buf, 0, n - consumed);
            file.write(w, buf, 0, clusterSize);
        }
        src.advance(n);

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
     * Writes one whole guest cluster compressed; falls back to an ordinary write when compression
     * does not save at least one byte. The caller has refused a read-only node.
     */
    boolean writeCompressed(long offset, ByteBuffer src) throws IOException {
        int len = src.remaining();
        // the image's last cluster may be given short (up to the end of the image or of the data)
        boolean whole = len == clusterSize || (len < clusterSize && offset + clusterSize > driver.length());
        if ((offset & (clusterSize - 1)) != 0 || !whole || len == 0 || offset + len > driver.length()) {
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
                    driver.header().compressionType(), buf, clusterSize, compressBuf, clusterSize - 1, deflater);
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

    /**
     * Allocates every L2 table and data cluster of an empty image (qemu-img's
     * {@code preallocation=metadata}) and returns the end of the last data cluster: the caller
     * grows the file to it sparsely, so the clusters read as zeros. Only for images being created.
     */
    long preallocateMetadata() throws IOException {
        lock.writeLock().lock();
        try {
            long clusters = (driver.length() + clusterSize - 1) >>> clusterBits;
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

    /** Ends the deflater, if a compressed write made one. */
    void close() {
        if (deflater != null) {
            deflater.end();
        }
    }
}
