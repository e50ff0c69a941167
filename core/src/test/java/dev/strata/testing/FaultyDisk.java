package dev.strata.testing;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.Extent;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * An in-memory disk for tests whose reads or writes can be made to fail with a chosen errno (5
 * EIO, 28 ENOSPC), as blkdebug's inject-error does, until it is repaired: the failure paths of
 * backups (BLOCK_JOB_ERROR, rollback of bitmaps) need a disk that fails on demand. Registered by
 * tests as driver "faulty" on a graph; never part of the product.
 */
public final class FaultyDisk implements BlockDriver {
    private final byte[] data;
    private volatile int readErrno;
    private volatile int writeErrno;

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

    @Override
    public synchronized void write(long offset, ByteBuffer src) throws BlockException {
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
    public void flush() {}

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
