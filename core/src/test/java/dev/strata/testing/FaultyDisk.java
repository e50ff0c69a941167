package dev.strata.testing;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.Extent;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An in-memory disk for tests whose reads or writes can be made to fail with a chosen errno (5
 * EIO, 28 ENOSPC), as blkdebug's inject-error does, until it is repaired: the failure paths of
 * backups (BLOCK_JOB_ERROR, rollback of bitmaps) need a disk that fails on demand. Its flushes can
 * also be held until a test releases them, for a flush that waits for the disk. Registered by
 * tests as driver "faulty" on a graph; never part of the product.
 */
public final class FaultyDisk implements BlockDriver {
    private final byte[] data;
    private volatile int readErrno;
    private volatile int writeErrno;
    // held flushes: null while flushes return at once
    private volatile CountDownLatch flushGate;
    // held writes: null while writes go on at once
    private volatile CountDownLatch writeGate;
    private final CountDownLatch flushWaiting = new CountDownLatch(1);
    private final AtomicInteger flushes = new AtomicInteger();

    public FaultyDisk(long size) {
        this.data = new byte[Math.toIntExact(size)];
    }

    /** Every later read fails with {@code errno}; 0 repairs. */
    public void failReads(int errno) {
        this.readErrno = errno;
    }

    /** Every later write fails with {@code errno}; 0 repairs. */
    public void failWrites(int errno) {
        this.writeErrno = errno;
    }

    /** Every later flush waits until {@link #releaseFlushes}. */
    public void holdFlushes() {
        flushGate = new CountDownLatch(1);
    }

    /** Lets held flushes (and every later one) return. */
    public void releaseFlushes() {
        CountDownLatch gate = flushGate;
        if (gate != null) {
            gate.countDown();
        }
    }

    /** Waits up to {@code seconds} for a flush to be held; whether one is. */
    public boolean awaitHeldFlush(long seconds) throws InterruptedException {
        return flushWaiting.await(seconds, TimeUnit.SECONDS);
    }

    /** Flushes that have returned. */
    public int flushes() {
        return flushes.get();
    }

    private static BlockException error(int errno) {
        return new BlockException(
                errno == BlockException.ENOSPC ? "No space left on device" : "Input/output error", errno);
    }

    @Override
    public String format() {
        return "faulty";
    }

    @Override
    public long length() {
        return data.length;
    }

    @Override
    public synchronized void read(long offset, ByteBuffer dst) throws BlockException {
        if (readErrno != 0) {
            throw error(readErrno);
        }
        dst.put(data, (int) offset, dst.remaining());
    }

    /** Every later write waits until {@link #releaseWrites}: a target that is stuck. */
    public void holdWrites() {
        writeGate = new CountDownLatch(1);
    }

    /** Lets held writes (and every later one) go on. */
    public void releaseWrites() {
        CountDownLatch gate = writeGate;
        writeGate = null;
        if (gate != null) {
            gate.countDown();
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws BlockException {
        CountDownLatch gate = writeGate;
        if (gate != null) {
            try {
                gate.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw error(BlockException.EIO);
            }
        }
        store(offset, src);
    }

    private synchronized void store(long offset, ByteBuffer src) throws BlockException {
        if (writeErrno != 0) {
            throw error(writeErrno);
        }
        src.get(data, (int) offset, src.remaining());
    }

    @Override
    public synchronized void writeZeroes(long offset, long length, boolean mayUnmap) throws BlockException {
        if (writeErrno != 0) {
            throw error(writeErrno);
        }
        java.util.Arrays.fill(data, (int) offset, (int) (offset + length), (byte) 0);
    }

    @Override
    public void discard(long offset, long length) {}

    @Override
    public void flush() throws InterruptedIOException {
        CountDownLatch gate = flushGate;
        if (gate != null) {
            flushWaiting.countDown();
            try {
                gate.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("flush interrupted");
            }
        }
        flushes.incrementAndGet();
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) {
        return List.of(Extent.of(offset, length, Extent.Kind.DATA));
    }

    @Override
    public boolean readOnly() {
        return false;
    }

    @Override
    public void close() {}
}
