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

/** HBitmap against a {@link BitSet} model, on sizes at the word and level boundaries. */
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
}
