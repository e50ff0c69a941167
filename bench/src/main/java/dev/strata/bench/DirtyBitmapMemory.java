package dev.strata.bench;

import dev.strata.bitmap.HBitmap;
import java.util.Locale;
import java.util.SplittableRandom;
import org.roaringbitmap.RoaringBitmap;

/**
 * Issue 3's memory targets for a 1 TiB disk at 64 KiB granularity (2^24 bits): empty, 1,000
 * random dirty granules, 10% random, fully dirty; Strata's HBitmap (its own accounting of the
 * pages it allocated, checked against the heap) against RoaringBitmap (its serialized size, and
 * its in-memory estimate). Also 8 empty bitmaps, QEMU's case of 0.3 MiB. Prints a table.
 *
 * <p>Run: see bench/README.md ({@code java -cp ... dev.strata.bench.DirtyBitmapMemory}).
 */
public final class DirtyBitmapMemory {
    private static final long BITS = 1L << 24;

    private DirtyBitmapMemory() {}

    public static void main(String[] args) {
        System.out.println("| contents | Strata HBitmap | RoaringBitmap (in memory) | RoaringBitmap (runOptimize) |");
        System.out.println("|---|---|---|---|");
        row("empty", 0);
        row("1,000 random dirty granules", 1000);
        row("10% random dirty granules", (int) (BITS / 10));
        row("fully dirty", -1);
        // the heap is measured over many bitmaps so that one GC's noise does not swamp it
        long before = usedHeap();
        HBitmap[] eight = new HBitmap[1000];
        for (int i = 0; i < eight.length; i++) {
            eight[i] = new HBitmap(BITS);
        }
        long after = usedHeap();
        System.out.printf(
                Locale.ROOT,
                "%n8 empty 1 TiB bitmaps: %s accounted, %s measured on the heap (1,000 of them / 125)%n",
                human(8 * eight[0].memoryBytes()),
                human((after - before) / 125));
        HBitmap[] full = new HBitmap[4];
        before = usedHeap();
        for (int i = 0; i < full.length; i++) {
            full[i] = new HBitmap(BITS);
            full[i].set(0, BITS);
        }
        after = usedHeap();
        System.out.printf(
                Locale.ROOT,
                "4 full 1 TiB bitmaps: %s accounted each, %s measured on the heap each (%.3f bits per granule)%n",
                human(full[0].memoryBytes()),
                human((after - before) / 4),
                (after - before) / 4 * 8.0 / BITS);
        if (eight[0].count() + full[0].count() < 0) {
            System.out.println(); // keep the bitmaps reachable until measured
        }
    }

    private static void row(String what, int dirty) {
        HBitmap h = new HBitmap(BITS);
        RoaringBitmap r = new RoaringBitmap();
        if (dirty < 0) {
            h.set(0, BITS);
            r.add(0L, BITS);
        } else {
            SplittableRandom rnd = new SplittableRandom(7);
            for (int i = 0; i < dirty; i++) {
                int bit = (int) rnd.nextLong(BITS);
                h.set(bit, 1);
                r.add(bit);
            }
        }
        long roaringBytes = r.getLongSizeInBytes();
        r.runOptimize();
        System.out.printf(
                Locale.ROOT,
                "| %s | %s | %s | %s |%n",
                what,
                human(h.memoryBytes()),
                human(roaringBytes),
                human(r.getLongSizeInBytes()));
    }

    private static long usedHeap() {
        for (int i = 0; i < 3; i++) {
            System.gc();
        }
        Runtime rt = Runtime.getRuntime();
        return rt.totalMemory() - rt.freeMemory();
    }

    private static String human(long bytes) {
        if (bytes < 10 * 1024) {
            return bytes + " B";
        }
        if (bytes < 10L * 1024 * 1024) {
            return String.format(Locale.ROOT, "%.1f KiB", bytes / 1024.0);
        }
        return String.format(Locale.ROOT, "%.2f MiB", bytes / 1048576.0);
    }
}
