package dev.strata.bench;

import dev.strata.bitmap.HBitmap;
import dev.strata.block.dirty.BitmapException;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.dirty.DirtyBitmaps;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;
import org.roaringbitmap.RoaringBitmap;

/**
 * Issue 3's bitmap benchmarks on a 1 TiB disk at 64 KiB granularity (2^24 bits), Strata against
 * RoaringBitmap on the same operations:
 *
 * <ul>
 *   <li>{@code mark*}: one random 4 KiB guest write marked (target: under 20 ns), through Strata's
 *       write path ({@link DirtyBitmaps#markDirty}), straight into the HBitmap, and into Roaring,
 *       writes drawn from 2^20 random offsets, so that most land on granules already dirty, as a
 *       busy disk's do;
 *   <li>{@code markFresh*}: 2^20 random writes into a clean bitmap, reported per write: the cost
 *       of writes that dirty new granules (page allocation included);
 *   <li>{@code walk*}: every dirty range of a bitmap with 1,000 random dirty granules found
 *       (target: under 100 us), as a backup job walks it.
 * </ul>
 *
 * <p>Memory is measured by {@link DirtyBitmapMemory}. How to run: bench/README.md.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class DirtyBitmapBench {
    static final long DISK = 1L << 40;
    static final long GRANULARITY = 1L << 16;
    static final long BITS = DISK / GRANULARITY;
    private static final int OFFSETS = 1 << 20;

    private DirtyBitmaps strataWritePath;
    private HBitmap hbitmap;
    private RoaringBitmap roaring;
    private long[] offsets;
    private int next;

    private DirtyBitmap walkStrata;
    private HBitmap walkHBitmap;
    private RoaringBitmap walkRoaring;

    @Setup(Level.Trial)
    public void setup() throws BitmapException {
        SplittableRandom rnd = new SplittableRandom(42);
        offsets = new long[OFFSETS];
        for (int i = 0; i < OFFSETS; i++) {
            offsets[i] = rnd.nextLong(DISK / 4096) * 4096;
        }
        strataWritePath = new DirtyBitmaps();
        strataWritePath.add("bitmap0", DISK, GRANULARITY, false);
        hbitmap = new HBitmap(BITS);
        roaring = new RoaringBitmap();

        DirtyBitmaps walkSet = new DirtyBitmaps();
        walkStrata = walkSet.add("walk", DISK, GRANULARITY, false);
        walkHBitmap = new HBitmap(BITS);
        walkRoaring = new RoaringBitmap();
        for (int i = 0; i < 1000; i++) {
            long bit = rnd.nextLong(BITS);
            walkSet.markDirty(bit * GRANULARITY, 1);
            walkHBitmap.set(bit, 1);
            walkRoaring.add((int) bit);
        }
    }

    private long nextOffset() {
        long off = offsets[next];
        next = (next + 1) & (OFFSETS - 1);
        return off;
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    public void markStrataWritePath() {
        strataWritePath.markDirty(nextOffset(), 4096);
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    public void markHBitmap() {
        hbitmap.set(nextOffset() >>> 16, 1);
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    public void markRoaring() {
        roaring.add((int) (nextOffset() >>> 16));
    }

    /** A clean bitmap for each batch of fresh writes. */
    @State(Scope.Thread)
    public static class Fresh {
        HBitmap hbitmap;
        RoaringBitmap roaring;

        @Setup(Level.Invocation)
        public void clean() {
            hbitmap = new HBitmap(BITS);
            roaring = new RoaringBitmap();
        }
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    @OperationsPerInvocation(OFFSETS)
    public void markFreshHBitmap(Fresh f) {
        HBitmap b = f.hbitmap;
        for (long off : offsets) {
            b.set(off >>> 16, 1);
        }
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    @OperationsPerInvocation(OFFSETS)
    public void markFreshRoaring(Fresh f) {
        RoaringBitmap r = f.roaring;
        for (long off : offsets) {
            r.add((int) (off >>> 16));
        }
    }

    /** Dirty ranges as a backup walks them: start of each run, then its end. */
    @Benchmark
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public long walkStrataDirtyBitmap() {
        long sum = 0;
        for (long off = walkStrata.nextDirty(0); off >= 0; ) {
            long end = walkStrata.nextClean(off);
            sum += end - off;
            off = end >= DISK ? -1 : walkStrata.nextDirty(end);
        }
        return sum;
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public long walkHBitmap() {
        long sum = 0;
        for (long bit = walkHBitmap.nextSet(0); bit >= 0; ) {
            long clear = walkHBitmap.nextClear(bit);
            long end = clear < 0 ? BITS : clear;
            sum += end - bit;
            bit = end >= BITS ? -1 : walkHBitmap.nextSet(end);
        }
        return sum;
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.MICROSECONDS)
    public long walkRoaring() {
        long sum = 0;
        for (long bit = walkRoaring.nextValue(0); bit >= 0; ) {
            long clear = walkRoaring.nextAbsentValue((int) bit);
            sum += clear - bit;
            bit = clear >= BITS ? -1 : walkRoaring.nextValue((int) clear);
        }
        return sum;
    }
}
