package dev.strata.bitmap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.BitSet;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import org.junit.jupiter.api.RepeatedTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * HBitmap against a {@link BitSet} model, on sizes at the word and level boundaries, and against
 * a sparse run model ({@link SparseBits}) at sizes up to 2^40 bits, with its memory bounds.
 */
class HBitmapTest {

    @ParameterizedTest(name = "size {0}")
    @ValueSource(longs = {1, 63, 64, 65, 4095, 4096, 4097, 262143, 262144, 262145, 1_000_003})
    void randomOperationsMatchABitSet(long size) {
        long seed = System.nanoTime() ^ size;
        SplittableRandom rnd = new SplittableRandom(seed);
        HBitmap bitmap = new HBitmap(size);
        BitSet model = new BitSet();
        for (int op = 0; op < 400; op++) {
            long start = rnd.nextLong(size);
            // mostly short runs, sometimes long ones that cross words and levels
            long max = size - start;
            long n = rnd.nextInt(4) == 0 ? rnd.nextLong(max + 1) : Math.min(max, rnd.nextInt(130));
            String what = "seed " + seed + " op " + op + " [" + start + ", +" + n + ")";
            switch (rnd.nextInt(5)) {
                case 0, 1 -> {
                    bitmap.set(start, n);
                    model.set((int) start, (int) (start + n));
                }
                case 2 -> {
                    bitmap.reset(start, n);
                    model.clear((int) start, (int) (start + n));
                }
                case 3 -> {
                    long from = rnd.nextLong(size);
                    assertThat(bitmap.nextSet(from))
                            .as(what + " nextSet " + from)
                            .isEqualTo(expectNextSet(model, from, size));
                    assertThat(bitmap.nextClear(from))
                            .as(what + " nextClear " + from)
                            .isEqualTo(expectNextClear(model, from, size));
                }
                default ->
                    assertThat(bitmap.count(start, n))
                            .as(what + " count range")
                            .isEqualTo(model.get((int) start, (int) (start + n)).cardinality());
            }
            assertThat(bitmap.count()).as(what).isEqualTo(model.cardinality());
        }
        assertSameBits(bitmap, model, size, "seed " + seed);
    }

    private static long expectNextSet(BitSet model, long from, long size) {
        int b = model.nextSetBit((int) from);
        return b < 0 || b >= size ? -1 : b;
    }

    private static long expectNextClear(BitSet model, long from, long size) {
        int b = model.nextClearBit((int) from);
        return b >= size ? -1 : b;
    }

    private static void assertSameBits(HBitmap bitmap, BitSet model, long size, String what) {
        BitSet seen = new BitSet();
        for (long b = bitmap.nextSet(0); b >= 0; b = b + 1 < size ? bitmap.nextSet(b + 1) : -1) {
            seen.set((int) b);
        }
        assertThat(seen).as(what).isEqualTo(model);
        for (int i = 0; i < size; i += 1 + (int) (size / 997)) {
            assertThat(bitmap.get(i)).as(what + " bit " + i).isEqualTo(model.get(i));
        }
    }

    @Test
    void mergeOrsTheBitsIn() {
        HBitmap a = new HBitmap(300_000);
        HBitmap b = new HBitmap(300_000);
        a.set(10, 100);
        b.set(50, 200);
        b.set(299_990, 10);
        a.merge(b);
        assertThat(a.count()).isEqualTo(240 + 10);
        assertThat(a.nextSet(0)).isEqualTo(10);
        assertThat(a.nextClear(10)).isEqualTo(250);
        assertThat(a.nextSet(250)).isEqualTo(299_990);
        assertThatThrownBy(() -> a.merge(new HBitmap(5))).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void rangesOutsideTheBitmapAreRefused() {
        HBitmap b = new HBitmap(100);
        assertThatThrownBy(() -> b.set(90, 11)).isInstanceOf(IndexOutOfBoundsException.class);
        assertThatThrownBy(() -> b.get(100)).isInstanceOf(IndexOutOfBoundsException.class);
        assertThat(b.nextSet(100)).isEqualTo(-1);
        assertThat(b.count()).isZero();
    }

    @Test
    void emptyBitmapHasNoBits() {
        HBitmap b = new HBitmap(0);
        assertThat(b.nextSet(0)).isEqualTo(-1);
        assertThat(b.nextClear(0)).isEqualTo(-1);
        assertThat(b.count()).isZero();
    }

    /** Setters of even bits race a resetter of odd bits in the same words: no set bit may hide. */
    @RepeatedTest(5)
    void concurrentSetAndResetNeverHideABit() throws InterruptedException {
        int size = 1 << 18;
        HBitmap bitmap = new HBitmap(size);
        for (int i = 1; i < size; i += 2) {
            bitmap.set(i, 1);
        }
        int threads = 3;
        CountDownLatch go = new CountDownLatch(1);
        Thread[] workers = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            int id = t;
            workers[t] = Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = (id == 0 ? 1 : 2 * (id - 1)); i < size; i += (id == 0 ? 2 : 4)) {
                    if (id == 0) {
                        bitmap.reset(i, 1);
                    } else {
                        bitmap.set(i, 1);
                    }
                }
            });
        }
        go.countDown();
        for (Thread w : workers) {
            w.join();
        }
        BitSet even = new BitSet();
        for (int i = 0; i < size; i += 2) {
            even.set(i);
        }
        assertThat(bitmap.count()).isEqualTo(size / 2);
        assertSameBits(bitmap, even, size, "concurrent");
    }

    @ParameterizedTest(name = "size {0}")
    @ValueSource(longs = {1L << 40, (1L << 40) - 1, (1L << 40) + 1, (1L << 34) + 5, 1L << 30, 1_000_000_007L})
    void hugeSparseBitmapsMatchARunModel(long size) {
        long seed = System.nanoTime() ^ size;
        SplittableRandom rnd = new SplittableRandom(seed);
        HBitmap bitmap = new HBitmap(size);
        SparseBits model = new SparseBits(size);
        long[] hotSpots = {0, size / 3, size - 1 - rnd.nextLong(1 << 20), rnd.nextLong(size)};
        for (int op = 0; op < 600; op++) {
            long start = rnd.nextInt(3) == 0
                    ? rnd.nextLong(size)
                    : Math.min(size - 1, hotSpots[rnd.nextInt(hotSpots.length)] + rnd.nextLong(1 << 16));
            long max = size - start;
            long n = Math.min(max, rnd.nextInt(10) == 0 ? rnd.nextLong(1 << 20) : rnd.nextLong(5000));
            String what = "seed " + seed + " op " + op + " [" + start + ", +" + n + ")";
            switch (rnd.nextInt(6)) {
                case 0, 1, 2 -> {
                    bitmap.set(start, n);
                    model.set(start, n);
                }
                case 3 -> {
                    // sometimes a reset that spans most of the bitmap: cheap, because it skips empty space
                    long r = rnd.nextInt(4) == 0 ? max : n;
                    bitmap.reset(start, r);
                    model.reset(start, r);
                }
                case 4 -> {
                    long from = rnd.nextInt(2) == 0 ? rnd.nextLong(size) : start;
                    assertThat(bitmap.nextSet(from))
                            .as(what + " nextSet " + from)
                            .isEqualTo(model.nextSet(from));
                    assertThat(bitmap.nextClear(from))
                            .as(what + " nextClear " + from)
                            .isEqualTo(model.nextClear(from));
                    assertThat(bitmap.get(from)).as(what + " get " + from).isEqualTo(model.get(from));
                }
                default -> {
                    long r = rnd.nextInt(3) == 0 ? max : n;
                    assertThat(bitmap.count(start, r)).as(what + " count range").isEqualTo(model.count(start, r));
                }
            }
            assertThat(bitmap.count()).as(what).isEqualTo(model.count());
        }
        assertThat(SparseBits.walk(bitmap)).as("seed " + seed).containsExactlyElementsOf(model.runs());
    }

    @Test
    void mergeOfHugeSparseBitmaps() {
        long size = 1L << 40;
        HBitmap a = new HBitmap(size);
        HBitmap b = new HBitmap(size);
        SparseBits model = new SparseBits(size);
        long seed = System.nanoTime();
        SplittableRandom rnd = new SplittableRandom(seed);
        for (int i = 0; i < 300; i++) {
            long start = rnd.nextLong(size - 10_000);
            long n = rnd.nextLong(10_000);
            (rnd.nextBoolean() ? a : b).set(start, n);
            model.set(start, n);
        }
        a.merge(b);
        assertThat(a.count()).as("seed %d", seed).isEqualTo(model.count());
        assertThat(SparseBits.walk(a)).as("seed %d", seed).containsExactlyElementsOf(model.runs());
        a.resetAll();
        assertThat(a.count()).isZero();
        assertThat(a.nextSet(0)).isEqualTo(-1);
    }

    /** Issue 3's memory targets, measured by the bitmap's own accounting of what it allocated. */
    @Test
    void memoryIsNextToNothingWhenEmptyAndAboutABitPerBitWhenFull() {
        HBitmap huge = new HBitmap(1L << 40);
        assertThat(huge.memoryBytes()).as("an empty 2^40-bit bitmap").isLessThan(4096);
        HBitmap tib = new HBitmap(1L << 24); // 1 TiB at 64 KiB granularity
        long empty = tib.memoryBytes();
        assertThat(empty).as("an empty 1 TiB bitmap").isLessThan(16 * 1024);
        tib.set(0, tib.size());
        double bitsPerGranule = tib.memoryBytes() * 8.0 / tib.size();
        assertThat(bitsPerGranule).as("a full bitmap").isLessThan(1.1);
        // a sparse one pays one page per level for each region it touches
        huge.set(12345, 1);
        huge.set((1L << 39) + 77, 1);
        assertThat(huge.memoryBytes()).isLessThan(2 * 8 * (4096 + 4096 + 64) + 4096);
    }

    @Test
    void wordsExposeTheLeafBitsInOrder() {
        HBitmap b = new HBitmap(200);
        b.set(0, 1);
        b.set(65, 3);
        b.set(199, 1);
        assertThat(b.word(0)).isEqualTo(1L);
        assertThat(b.word(1)).isEqualTo(0b1110L);
        assertThat(b.word(3)).isEqualTo(1L << (199 - 192));
        assertThatThrownBy(() -> b.word(4)).isInstanceOf(IndexOutOfBoundsException.class);
    }

    /** Threads race to create the same pages and directories: every bit set must be there once. */
    @RepeatedTest(3)
    void concurrentSettersAgreeOnLazilyCreatedPages() throws InterruptedException {
        long size = 1L << 36;
        HBitmap bitmap = new HBitmap(size);
        int threads = 4;
        int perThread = 20_000;
        long stride = 4099; // lands bits of all threads in shared words, pages and directories
        CountDownLatch go = new CountDownLatch(1);
        Thread[] workers = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            int id = t;
            workers[t] = Thread.ofPlatform().start(() -> {
                try {
                    go.await();
                } catch (InterruptedException e) {
                    return;
                }
                for (int i = 0; i < perThread; i++) {
                    bitmap.set((long) i * stride * threads + id, 1);
                }
            });
        }
        go.countDown();
        for (Thread w : workers) {
            w.join();
        }
        assertThat(bitmap.count()).isEqualTo((long) threads * perThread);
        long seen = 0;
        for (long b = bitmap.nextSet(0); b >= 0; b = bitmap.nextSet(b + 1)) {
            seen++;
        }
        assertThat(seen).isEqualTo((long) threads * perThread);
    }

    /** Words copied out of one bitmap and OR-ed into another rebuild it: count, bits and iteration. */
    @Test
    void copyWordsAndOrWordsRoundTrip() {
        for (long size : new long[] {1, 63, 64, 65, 4095, 70_001, 1 << 20}) {
            java.util.Random r = new java.util.Random(size);
            HBitmap a = new HBitmap(size);
            for (int i = 0; i < 200; i++) {
                long start = (long) (r.nextDouble() * size);
                a.set(start, Math.min(size - start, 1 + r.nextInt(300)));
            }
            HBitmap b = new HBitmap(size);
            int chunk = 700;
            long[] words = new long[chunk];
            for (long w = 0; w < (size + 63) / 64; w += chunk) {
                a.copyWords(w, words, chunk);
                b.orWords(w, words, chunk);
            }
            assertThat(b.count()).as("size %d", size).isEqualTo(a.count());
            for (long bit = 0; bit < size; bit++) {
                assertThat(b.get(bit)).as("size %d, bit %d", size, bit).isEqualTo(a.get(bit));
            }
            // iteration finds every word through the levels above, as after set()
            for (long bit = a.nextSet(0), other = b.nextSet(0); bit >= 0 || other >= 0; ) {
                assertThat(other).as("size %d", size).isEqualTo(bit);
                bit = bit + 1 < size ? a.nextSet(bit + 1) : -1;
                other = other + 1 < size ? b.nextSet(other + 1) : -1;
            }
            // bits past the end in the words are ignored
            long[] ones = new long[chunk];
            java.util.Arrays.fill(ones, -1L);
            HBitmap full = new HBitmap(size);
            full.orWords(0, ones, chunk);
            assertThat(full.count()).as("size %d", size).isEqualTo(Math.min(size, 64L * chunk));
        }
    }
}
