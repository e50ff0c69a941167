package dev.strata.block.mem;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.OpenContext;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * QEMU's "null-co": reads return zeros (or leave the buffer alone with {@code read-zeroes=off}),
 * writes are dropped. A sink and source for benchmarks that measure everything but the disk.
 */
public final class NullDriver implements BlockDriver {
    private final long size;
    private final boolean readZeroes;

    public NullDriver(long size, boolean readZeroes) {
        this.size = size;
        this.readZeroes = readZeroes;
    }

    public static NullDriver open(BlockOptions options, OpenContext context) {
        long size = options.number("size", 1L << 30);
        boolean readZeroes = options.bool("read-zeroes", false);
        options.get("latency-ns");
        return new NullDriver(size, readZeroes);
    }

    @Override
    public String format() {
        return "null-co";
    }

    @Override
    public long length() {
        return size;
    }

    @Override
    public void read(long offset, ByteBuffer dst) {
        if (readZeroes) {
            if (dst.hasArray()) {
                int start = dst.arrayOffset() + dst.position();
                java.util.Arrays.fill(dst.array(), start, start + dst.remaining(), (byte) 0);
                dst.position(dst.limit());
            } else {
                while (dst.hasRemaining()) {
                    dst.put((byte) 0);
                }
            }
        } else {
            dst.position(dst.limit());
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) {
        src.position(src.limit());
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) {}

    @Override
    public void discard(long offset, long length) {}

    @Override
    public void flush() {}

    @Override
    public List<Extent> blockStatus(long offset, long length) {
        return List.of(Extent.of(offset, length, readZeroes ? Extent.Kind.ZERO : Extent.Kind.DATA));
    }

    @Override
    public boolean readOnly() {
        return false;
    }

    @Override
    public void close() {}
}
