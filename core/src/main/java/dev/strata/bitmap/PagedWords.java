package dev.strata.bitmap;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A long-indexed array of 64-bit words, all zero at first, whose memory is allocated a page at a
 * time on the first write that needs it: a radix tree of directories ({@value #DIR_SLOTS} slots)
 * over pages of {@value #PAGE_WORDS} words (4 KiB, like the OS pages QEMU's bitmaps rely on being
 * faulted in lazily). An empty array of 2^34 words costs a few dozen references.
 *
 * <p>Concurrency: reads are volatile and see a missing page as zeros; a writer that finds a page
 * (or directory) missing allocates one and installs it with a compare-and-set, so racing writers
 * agree on one page and no update is lost. Word updates are atomic read-modify-writes. Pages are
 * never freed: a word once written keeps its page even when it returns to zero.
 */
final class PagedWords {
    static final int PAGE_SHIFT = 9;
    static final int PAGE_WORDS = 1 << PAGE_SHIFT;
    static final int PAGE_MASK = PAGE_WORDS - 1;
    static final int DIR_SHIFT = 10;
    static final int DIR_SLOTS = 1 << DIR_SHIFT;
    private static final int DIR_MASK = DIR_SLOTS - 1;

    static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle SLOT = MethodHandles.arrayElementVarHandle(Object[].class);

    /** Rough sizes of allocated arrays (header + elements, compressed references). */
    private static final long ARRAY_HEADER = 16;

    // set at construction, never changed
    private final long length;
    /** Directory levels between {@link #top} and the pages; at least one. */
    private final int height;

    private final Object[] top;
    private final AtomicLong allocatedBytes = new AtomicLong();

    PagedWords(long length) {
        if (length < 0) {
            throw new IllegalArgumentException("negative length " + length);
        }
        this.length = length;
        long pages = Math.max(1, (length + PAGE_WORDS - 1) >>> PAGE_SHIFT);
        int h = 1;
        while (h < 6 && pages > 1L << (DIR_SHIFT * h)) {
            h++;
        }
        this.height = h;
        long perTopSlot = 1L << (DIR_SHIFT * (h - 1));
        long topSlots = (pages + perTopSlot - 1) / perTopSlot;
        if (topSlots > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("too many words: " + length);
        }
        this.top = new Object[(int) topSlots];
        allocatedBytes.set(ARRAY_HEADER + 4 * topSlots);
    }

    long length() {
        return length;
    }

    /** Bytes this array holds now (an estimate of the JVM's object sizes). */
    long allocatedBytes() {
        return allocatedBytes.get();
    }

    private int slot(long page, int level) {
        long s = page >>> (DIR_SHIFT * level);
        return (int) (level == height - 1 ? s : s & DIR_MASK);
    }

    /** The page holding word {@code index}, or null when that page was never written. */
    private long[] pageIfPresent(long index) {
        long page = index >>> PAGE_SHIFT;
        Object node = top;
        for (int level = height - 1; level >= 0; level--) {
            node = SLOT.getAcquire((Object[]) node, slot(page, level));
            if (node == null) {
                return null;
            }
        }
        return (long[]) node;
    }

    /** The page holding word {@code index}, allocated if missing (for bulk updates a page at a time). */
    long[] pageForWrite(long index) {
        long page = index >>> PAGE_SHIFT;
        Object node = top;
        for (int level = height - 1; level >= 0; level--) {
            Object[] dir = (Object[]) node;
            int s = slot(page, level);
            Object child = SLOT.getAcquire(dir, s);
            if (child == null) {
                Object fresh;
                long bytes;
                if (level == 0) {
                    int words = (int) Math.min(PAGE_WORDS, length - (page << PAGE_SHIFT));
                    fresh = new long[words];
                    bytes = ARRAY_HEADER + 8L * words;
                } else {
                    fresh = new Object[DIR_SLOTS];
                    bytes = ARRAY_HEADER + 4L * DIR_SLOTS;
                }
                Object witness = SLOT.compareAndExchangeRelease(dir, s, null, fresh);
                if (witness == null) {
                    allocatedBytes.addAndGet(bytes);
                    child = fresh;
                } else {
                    child = witness;
                }
            }
            node = child;
        }
        return (long[]) node;
    }

    /**
     * Copies words {@code [from, from+n)} (all below {@link #length()}) into {@code dst} from
     * {@code off}, a page at a time; words of pages never written read as zero. Plain reads: a
     * word changing meanwhile may be seen before or after its change.
     */
    void copyOut(long from, long[] dst, int off, int n) {
        while (n > 0) {
            int inPage = (int) (from & PAGE_MASK);
            int k = Math.min(n, PAGE_WORDS - inPage);
            long[] page = pageIfPresent(from);
            if (page == null) {
                Arrays.fill(dst, off, off + k, 0);
            } else {
                System.arraycopy(page, inPage, dst, off, k);
            }
            from += k;
            off += k;
            n -= k;
        }
    }

    long get(long index) {
        long[] page = pageIfPresent(index);
        return page == null ? 0 : (long) WORD.getVolatile(page, (int) (index & PAGE_MASK));
    }

    long getAndOr(long index, long bits) {
        return (long) WORD.getAndBitwiseOr(pageForWrite(index), (int) (index & PAGE_MASK), bits);
    }

    /** ANDs a word; a word whose page was never written is zero and stays so, without a page. */
    long getAndAnd(long index, long bits) {
        long[] page = pageIfPresent(index);
        return page == null ? 0 : (long) WORD.getAndBitwiseAnd(page, (int) (index & PAGE_MASK), bits);
    }
}
