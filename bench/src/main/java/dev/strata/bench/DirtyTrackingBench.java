package dev.strata.bench;

import dev.strata.block.dirty.BitmapException;
import dev.strata.block.dirty.DirtyBitmaps;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What marking costs the write path: one guest write of {@code writeSize} bytes marked in
 * {@code bitmaps} recording bitmaps on a 2 GiB node, at sequential offsets.
 *
 * <p>How to run it: bench/README.md.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 2, time = 1)
@Measurement(iterations = 3, time = 1)
@Fork(1)
public class DirtyTrackingBench {
    private static final long DISK = 2L << 30;

    @Param({"0", "1", "8"})
    int bitmaps;

    @Param({"4096", "1048576"})
    int writeSize;

    private DirtyBitmaps set;
    private long offset;

    @Setup
    public void setup() throws BitmapException {
        set = new DirtyBitmaps();
        for (int i = 0; i < bitmaps; i++) {
            set.add("bitmap" + i, DISK, 65536, false);
        }
    }

    @Benchmark
    public void markWrite() {
        set.markDirty(offset, writeSize);
        offset += writeSize;
        if (offset + writeSize > DISK) {
            offset = 0;
        }
    }
}
