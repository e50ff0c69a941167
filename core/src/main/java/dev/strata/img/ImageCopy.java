package dev.strata.img;

import dev.strata.block.BlockNode;
import dev.strata.block.CompressedWriter;
import dev.strata.block.Extent;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;

/**
 * Copies the contents of one node into another of at least the same size, keeping holes: the
 * engine of {@code convert}.
 *
 * <p>Runs that block status reports as zeros are never read; runs of data are read and scanned,
 * and only the parts that are not zero (in blocks of the sparse size, or of the target's cluster
 * when that is larger, so a qcow2 target gets whole clusters) are written. On a target that starts
 * out zero (new, without backing file) zeros are skipped; otherwise they are written as zero
 * requests that may unmap. With a backing file on the target, runs the source does not hold in
 * its own top layer are left unallocated so that the backing file shows through, as qemu-img does.
 *
 * <p>With a compressed writer, reads and writes go in whole target clusters: runs of data are
 * widened to cluster boundaries, and each cluster that is not all zeros is written compressed
 * (zero clusters stay holes, as with qemu-img convert -c).
 *
 * <p>With copy offloading ({@code -C}), data that lies plainly in the source's host file moves to
 * the target inside the kernel ({@link dev.strata.block.HostRun}) from the calling thread, and
 * data is not scanned for zeros (as qemu-img -C); the rest takes the buffered path.
 *
 * <p>Concurrency: the calling thread reads (block status and data) while one writer thread scans
 * and writes; they hand over {@value #BUFFERS} reused buffers of {@value #BUF_SIZE} bytes through
 * two queues. A failure on either side stops both and is rethrown here.
 */
final class ImageCopy {
    static final int BUF_SIZE = 2 << 20;
    static final int BUFFERS = 4;
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(BUF_SIZE).asReadOnlyBuffer();

    /** One unit of work for the writer: data in a buffer, or a run that reads as zeros. */
    private record Task(long offset, long length, ByteBuffer data) {}

    private static final Task END = new Task(-1, 0, null);

    private final BlockNode src;
    private final BlockNode dst;
    private final long size;
    private final int granularity;
    private final boolean fullyAllocate;
    private final boolean targetZeroInit;
    private final boolean targetHasBacking;
    /** Null unless clusters are written compressed. */
    private final CompressedWriter compressor;

    private final boolean copyOffload;

    private final int clusterSize;

    private final BlockingQueue<ByteBuffer> free = new ArrayBlockingQueue<>(BUFFERS);
    private final BlockingQueue<Task> work = new ArrayBlockingQueue<>(BUFFERS + 1);
    private volatile Throwable writerFailure;

    /**
     * @param minSparse zero bytes in a row that may stay a hole (qemu-img's -S); 0 writes everything
     * @param targetZeroInit the target reads as zeros everywhere before the copy
     * @param targetHasBacking the target has a backing file that matches the source's
     * @param compressor the target's driver, to write compressed clusters; null for plain writes
     * @param copyOffload copy data inside the kernel where it can, without zero detection
     */
    ImageCopy(
            BlockNode src,
            BlockNode dst,
            long size,
            long minSparse,
            boolean targetZeroInit,
            boolean targetHasBacking,
            CompressedWriter compressor,
            boolean copyOffload) {
        if (copyOffload && compressor != null) {
            throw new IllegalArgumentException("copy offloading cannot write compressed clusters");
        }
        this.src = src;
        this.copyOffload = copyOffload;
        this.dst = dst;
        this.size = size;
        this.compressor = compressor;
        this.clusterSize = Math.max(512, dst.clusterSize());
        this.fullyAllocate = minSparse == 0;
        this.granularity = compressor != null
                ? clusterSize
                : (int) Math.min(BUF_SIZE, Math.max(Math.max(minSparse, 512), dst.clusterSize()));
        this.targetZeroInit = targetZeroInit && !targetHasBacking;
        this.targetHasBacking = targetHasBacking;
    }

    void run() throws IOException, InterruptedException {
        for (int i = 0; i < BUFFERS; i++) {
            free.add(ByteBuffer.allocateDirect(BUF_SIZE));
        }
        Thread writer = Thread.ofPlatform().name("strata-convert-writer").start(this::writeLoop);
        try {
            readLoop();
        } finally {
            work.put(END);
            writer.join();
        }
        if (writerFailure != null) {
            switch (writerFailure) {
                case IOException e -> throw e;
                case RuntimeException e -> throw e;
                case Error e -> throw e;
                default -> throw new IOException(writerFailure);
            }
        }
    }

    private void readLoop() throws IOException, InterruptedException {
        ExtentCursor cursor = new ExtentCursor(src, size);
        long pos = 0;
        while (pos < size && writerFailure == null) {
            Extent e = cursor.at(pos);
            long end = e.end();
            boolean inBacking = e.depth() > 0 || e.kind() == Extent.Kind.UNALLOCATED;
            boolean skipBacking = targetHasBacking && inBacking;
            boolean skipZero = e.isZero() && !fullyAllocate;
            if (compressor != null) {
                // compressed clusters are written whole: skip only whole clusters, read the rest
                long skipEnd = end >= size ? size : end & -(long) clusterSize;
                if ((skipBacking || skipZero) && skipEnd > pos) {
                    if (!skipBacking) {
                        work.put(new Task(pos, skipEnd - pos, null));
                    }
                    pos = skipEnd;
                    continue;
                }
                end = Math.min(size, alignUp(end, clusterSize));
                e = Extent.of(pos, end - pos, Extent.Kind.DATA);
            } else if (skipBacking) {
                pos = end;
                continue;
            } else if (skipZero) {
                work.put(new Task(pos, end - pos, null));
                pos = end;
                continue;
            }
            while (pos < end && writerFailure == null) {
                long offloaded = copyOffload && !e.isZero() ? offload(pos, end) : 0;
                if (offloaded > 0) {
                    pos += offloaded;
                    continue;
                }
                int n = (int) Math.min(BUF_SIZE, end - pos);
                ByteBuffer buf = free.take();
                buf.clear().limit(n);
                if (e.isZero()) {
                    buf.put(ZEROS.duplicate().limit(n));
                } else {
                    src.read(pos, buf);
                }
                buf.flip();
                work.put(new Task(pos, n, buf));
                pos += n;
            }
        }
    }

    /** Copies the first bytes of {@code [pos, end)} inside the kernel; 0 when they are not plainly stored. */
    private long offload(long pos, long end) throws IOException {
        return src.withHostRun(pos, end - pos, run -> {
            dst.writeHost(pos, run);
            return run.length();
        });
    }

    private void writeLoop() {
        while (true) {
            Task t;
            try {
                t = work.take();
            } catch (InterruptedException e) {
                writerFailure = e;
                return;
            }
            if (t == END) {
                return;
            }
            try {
                if (writerFailure == null) {
                    if (t.data() == null) {
                        writeZeros(t.offset(), t.length());
                    } else {
                        writeData(t.offset(), t.data());
                    }
                }
            } catch (IOException | RuntimeException e) {
                writerFailure = e;
            } finally {
                if (t.data() != null) {
                    free.add(t.data());
                }
            }
        }
    }

    private void writeZeros(long offset, long length) throws IOException {
        if (!targetZeroInit) {
            dst.writeZeroes(offset, length, true);
        }
    }

    /** Writes the non-zero parts of {@code buf} (data for [offset, offset+remaining)). */
    private void writeData(long offset, ByteBuffer buf) throws IOException {
        int n = buf.remaining();
        if ((fullyAllocate || copyOffload) && compressor == null) {
            dst.write(offset, buf);
            return;
        }
        // blocks are aligned to the image, so a hole in the target always covers whole blocks
        int i = 0;
        while (i < n) {
            int blockEnd = (int) Math.min(n, alignUp(offset + i + 1, granularity) - offset);
            boolean zero = isZero(buf, i, blockEnd);
            int runEnd = blockEnd;
            while (runEnd < n) {
                int next = (int) Math.min(n, runEnd + granularity);
                if (isZero(buf, runEnd, next) != zero) {
                    break;
                }
                runEnd = next;
            }
            if (zero) {
                writeZeros(offset + i, runEnd - i);
            } else if (compressor != null) {
                for (int j = i; j < runEnd; j += granularity) {
                    int pieceEnd = Math.min(runEnd, j + granularity);
                    if (pieceEnd - j < granularity && offset + pieceEnd == size) {
                        // the source ends inside the target's last cluster (its size is not a
                        // multiple of 512): the rest of that cluster reads as zeros, as in qemu-img
                        int padEnd = (int) Math.min(j + granularity, dst.length() - offset);
                        ByteBuffer whole = buf.duplicate().clear();
                        for (int z = pieceEnd; z < padEnd; z++) {
                            whole.put(z, (byte) 0);
                        }
                        pieceEnd = padEnd;
                    }
                    compressor.writeCompressed(
                            offset + j, buf.duplicate().clear().limit(pieceEnd).position(j));
                }
            } else {
                dst.write(offset + i, buf.duplicate().limit(runEnd).position(i));
            }
            i = runEnd;
        }
    }

    private static boolean isZero(ByteBuffer buf, int from, int to) {
        // data seldom starts with eight zero bytes: one load settles most blocks, without the two
        // buffer views the full comparison needs (a 2 GiB convert checks half a million blocks)
        if (to - from >= Long.BYTES && buf.getLong(from) != 0) {
            return false;
        }
        return buf.duplicate()
                        .limit(to)
                        .position(from)
                        .mismatch(ZEROS.duplicate().limit(to - from))
                < 0;
    }

    private static long alignUp(long v, long a) {
        return (v + a - 1) / a * a;
    }
}
