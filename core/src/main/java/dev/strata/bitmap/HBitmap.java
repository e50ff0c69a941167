package dev.strata.bitmap;

import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A fixed-size hierarchical bitmap in the style of QEMU's HBitmap: the bits themselves in 64-bit
 * leaf words, and above them levels in which each bit says "this word below is not zero", up to a
 * single top word. Finding the next set bit skips empty regions 64, 4096, 262144... bits at a time,
 * so iteration over a huge, sparse bitmap costs what its set bits cost, not its size.
 *
 * <p>Memory: every level is a {@link PagedWords}, whose 4 KiB pages are allocated on first write;
 * an empty bitmap of 2^40 bits costs a few hundred bytes, a full one about 1.016 bits per bit (the
 * leaves plus 1/64 + 1/4096 + ... for the levels above, plus page directories). Up to 2^58 bits.
 *
 * <p>Concurrency: {@link #set} needs no lock. Leaf words change with atomic read-modify-write, the
 * upper levels are OR-ed after the leaf, and {@link #count} is adjusted by exactly the bits each
 * update flipped. {@link #reset} may run concurrently with {@code set}: after clearing a summary
 * bit it re-reads the word below and restores the summary when a concurrent set got in between, so
 * a set bit is never hidden from iteration. Several concurrent resets, or resets concurrent with
 * iteration, are serialised by the caller (the owning dirty bitmap's lock).
 *
 * <p>Invariants: {@code count()} equals the number of set leaf bits whenever no update is in
 * flight; a summary bit is set whenever the word it covers is non-zero (it may be set for a zero
 * word, which iteration tolerates).
 */
public final class HBitmap {
    private static final int SHIFT = 6;
    private static final int BITS = 64;
    /** The largest size {@link PagedWords} can hold at its leaf level. */
    public static final long MAX_SIZE = 1L << 58;

    // set at construction, never changed
    private final long size;
    /** levels[0] is the top (one word); levels[depth-1] holds the leaf bits. */
    private final PagedWords[] levels;

    private final AtomicLong count = new AtomicLong();

    /** A bitmap of {@code size} bits, all clear. */
    public HBitmap(long size) {
        if (size < 0 || size > MAX_SIZE) {
            throw new IllegalArgumentException("bitmap size out of range: " + size);
        }
        this.size = size;
        int depth = 1;
        for (long words = wordsFor(size); words > 1; words = wordsFor(words)) {
            depth++;
        }
        levels = new PagedWords[depth];
        long words = wordsFor(size);
        for (int l = depth - 1; l >= 0; l--) {
            levels[l] = new PagedWords(Math.max(1, words));
            words = wordsFor(words);
        }
    }

    private static long wordsFor(long bits) {
        return (bits + BITS - 1) >>> SHIFT;
    }

    public long size() {
        return size;
    }

    /** Number of set bits. */
    public long count() {
        return count.get();
    }

    public boolean isEmpty() {
        return count.get() == 0;
    }

    /** Bytes of memory the bitmap holds now, all levels included (an estimate of JVM object sizes). */
    public long memoryBytes() {
        long total = 0;
        for (PagedWords l : levels) {
            total += l.allocatedBytes();
        }
        return total;
    }

    public boolean get(long bit) {
        checkBit(bit);
        return (leaves().get(bit >>> SHIFT) & (1L << bit)) != 0;
    }

    /** The leaf word holding bits {@code [64*index, 64*index+64)}, bit i of the word being bit 64*index+i. */
    public long word(long index) {
        if (index < 0 || index >= leaves().length()) {
            throw new IndexOutOfBoundsException("word " + index + " outside bitmap of " + size + " bits");
        }
        return leaves().get(index);
    }

    /**
     * Copies leaf words {@code [from, from+n)} into {@code dst} (see {@link #word}), words past
     * the end as zero: a bitmap's serialization, a page at a time.
     */
    public void copyWords(long from, long[] dst, int n) {
        PagedWords leaves = leaves();
        int inside = (int) Math.clamp(leaves.length() - from, 0, n);
        leaves.copyOut(from, dst, 0, inside);
        Arrays.fill(dst, inside, n, 0);
    }

    /**
     * ORs {@code n} words into the leaf words from {@code from} (bit i of {@code words[k]} is bit
     * {@code 64*(from+k)+i}), as {@link #set} would set their bits; bits past the end are ignored.
     * A bitmap's deserialization: a page lookup per page, an atomic update per non-zero word, and
     * the levels above marked once per 64 words. Meant for the bitmap's owner before it is shared:
     * iteration running meanwhile may miss the new words until the call returns.
     */
    public void orWords(long from, long[] words, int n) {
        PagedWords leaves = leaves();
        long last = size == 0 ? -1 : (size - 1) >>> SHIFT;
        long added = 0;
        long[] page = null;
        long pageIndex = -1;
        long group = -1;
        long groupBits = 0;
        for (int k = 0; k < n && from + k <= last; k++) {
            long index = from + k;
            long w = words[k];
            if (index == last && (size & (BITS - 1)) != 0) {
                w &= (1L << size) - 1;
            }
            if (w == 0) {
                continue;
            }
            if (index >>> PagedWords.PAGE_SHIFT != pageIndex) {
                pageIndex = index >>> PagedWords.PAGE_SHIFT;
                page = leaves.pageForWrite(index);
            }
            long old = (long) PagedWords.WORD.getAndBitwiseOr(page, (int) (index & PagedWords.PAGE_MASK), w);
            added += Long.bitCount(w & ~old);
            if (old == 0) {
                if (index >>> SHIFT != group) {
                    markSummaryGroup(group, groupBits);
                    group = index >>> SHIFT;
                    groupBits = 0;
                }
                groupBits |= 1L << index;
            }
        }
        markSummaryGroup(group, groupBits);
        if (added != 0) {
            count.addAndGet(added);
        }
    }

    /** Marks the leaf words {@code 64*group + i} for each bit i of {@code bits} non-empty in the levels above. */
    private void markSummaryGroup(long group, long bits) {
        if (bits == 0 || levels.length < 2) {
            return;
        }
        long old = levels[levels.length - 2].getAndOr(group, bits);
        if (old == 0) {
            markSummaryFrom(levels.length - 3, group);
        }
    }

    /**
     * Sets bits {@code [start, start+n)}. Lock-free. Words whose bits are all set already are only
     * read: a concurrent {@link #reset} may then clear them, which orders this set before it.
     */
    public void set(long start, long n) {
        checkRange(start, n);
        PagedWords leaves = leaves();
        long end = start + n;
        for (long bit = start; bit < end; ) {
            long word = bit >>> SHIFT;
            long wordEnd = Math.min(end, (word + 1) << SHIFT);
            long mask = mask(bit, wordEnd);
            if ((leaves.get(word) & mask) == mask) {
                // already dirty (the common case for a busy disk): a read, no atomic write
                bit = wordEnd;
                continue;
            }
            long old = leaves.getAndOr(word, mask);
            long added = Long.bitCount(mask & ~old);
            if (added != 0) {
                count.addAndGet(added);
            }
            if (old == 0) {
                markSummary(word);
            }
            bit = wordEnd;
        }
    }

    /** Clears bits {@code [start, start+n)}; costs what the set bits in the range cost. */
    public void reset(long start, long n) {
        checkRange(start, n);
        PagedWords leaves = leaves();
        long end = start + n;
        for (long bit = start < end ? nextSet(start) : -1; bit >= 0 && bit < end; ) {
            long word = bit >>> SHIFT;
            long wordEnd = Math.min(end, (word + 1) << SHIFT);
            long mask = mask(bit, wordEnd);
            long old = leaves.getAndAnd(word, ~mask);
            long removed = Long.bitCount(mask & old);
            if (removed != 0) {
                count.addAndGet(-removed);
                if ((old & ~mask) == 0) {
                    clearSummary(word);
                }
            }
            bit = wordEnd >= end || wordEnd >= size ? -1 : nextSet(wordEnd);
        }
    }

    /** Clears every bit. */
    public void resetAll() {
        reset(0, size);
    }

    /** Sets every bit that is set in {@code other}, which must have the same size. */
    public void merge(HBitmap other) {
        if (other.size != size) {
            throw new IllegalArgumentException("bitmap sizes differ: " + size + " vs " + other.size);
        }
        PagedWords mine = leaves();
        PagedWords theirs = other.leaves();
        for (long bit = other.nextSet(0); bit >= 0; ) {
            long word = bit >>> SHIFT;
            long bits = theirs.get(word);
            if (bits != 0) {
                long old = mine.getAndOr(word, bits);
                long added = Long.bitCount(bits & ~old);
                if (added != 0) {
                    count.addAndGet(added);
                }
                if (old == 0) {
                    markSummary(word);
                }
            }
            long next = (word + 1) << SHIFT;
            bit = next >= size ? -1 : other.nextSet(next);
        }
    }

    /** The first set bit at or after {@code from}, or -1. */
    public long nextSet(long from) {
        if (from < 0) {
            throw new IllegalArgumentException("negative bit " + from);
        }
        if (from >= size) {
            return -1;
        }
        int leafLevel = levels.length - 1;
        long pos = from;
        // try the leaf word of 'from' first, then climb while the rest of the word is empty
        int level = leafLevel;
        while (true) {
            long index = pos >>> SHIFT;
            long word = levels[level].get(index) & (-1L << pos);
            if (word != 0) {
                pos = (index << SHIFT) + Long.numberOfTrailingZeros(word);
                break;
            }
            if (level == 0) {
                return -1;
            }
            // move to the next word of this level: its summary bit is index + 1 one level up
            pos = index + 1;
            level--;
            if (pos >= levels[level].length() << SHIFT) {
                return -1;
            }
        }
        // descend: pos is a set bit at 'level'; each summary bit names a word one level down
        while (level < leafLevel) {
            level++;
            long word = levels[level].get(pos);
            if (word == 0) {
                // a stale summary bit (its word was just cleared): continue after that word
                long next = (pos + 1) << (SHIFT * (leafLevel - level + 1));
                return next >= size || next <= 0 ? -1 : nextSet(next);
            }
            pos = (pos << SHIFT) + Long.numberOfTrailingZeros(word);
        }
        return pos < size ? pos : -1;
    }

    /** The first clear bit at or after {@code from}, or -1 when every bit from there on is set. */
    public long nextClear(long from) {
        if (from < 0) {
            throw new IllegalArgumentException("negative bit " + from);
        }
        PagedWords leaves = leaves();
        for (long pos = from; pos < size; ) {
            long index = pos >>> SHIFT;
            long word = ~leaves.get(index) & (-1L << pos);
            if (word != 0) {
                long bit = (index << SHIFT) + Long.numberOfTrailingZeros(word);
                return bit < size ? bit : -1;
            }
            pos = (index + 1) << SHIFT;
        }
        return -1;
    }

    /** Number of set bits in {@code [start, start+n)}. */
    public long count(long start, long n) {
        checkRange(start, n);
        PagedWords leaves = leaves();
        long end = start + n;
        long total = 0;
        for (long bit = start < end ? nextSet(start) : -1; bit >= 0 && bit < end; ) {
            long word = bit >>> SHIFT;
            long wordEnd = Math.min(end, (word + 1) << SHIFT);
            total += Long.bitCount(leaves.get(word) & mask(bit, wordEnd));
            bit = wordEnd >= end || wordEnd >= size ? -1 : nextSet(wordEnd);
        }
        return total;
    }

    private PagedWords leaves() {
        return levels[levels.length - 1];
    }

    private void markSummary(long leafWord) {
        markSummaryFrom(levels.length - 2, leafWord);
    }

    /** Sets, from level {@code level} up, the bit saying that word {@code index} of the level below is non-empty. */
    private void markSummaryFrom(int level, long index) {
        for (int l = level; l >= 0; l--) {
            long old = levels[l].getAndOr(index >>> SHIFT, 1L << index);
            if (old != 0) {
                return; // the levels above already know this word is non-empty
            }
            index >>>= SHIFT;
        }
    }

    private void clearSummary(long leafWord) {
        long index = leafWord;
        PagedWords below = leaves();
        for (int l = levels.length - 2; l >= 0; l--) {
            long word = index >>> SHIFT;
            long bit = 1L << index;
            long old = levels[l].getAndAnd(word, ~bit);
            if (below.get(index) != 0) {
                // a concurrent set filled the word after we saw it empty: keep it visible
                levels[l].getAndOr(word, bit);
                return;
            }
            if ((old & ~bit) != 0) {
                return;
            }
            below = levels[l];
            index = word;
        }
    }

    private static long mask(long from, long to) {
        long hi = (to & (BITS - 1)) == 0 ? -1L : (1L << to) - 1;
        return (-1L << from) & hi;
    }

    private void checkBit(long bit) {
        if (bit < 0 || bit >= size) {
            throw new IndexOutOfBoundsException("bit " + bit + " outside bitmap of " + size);
        }
    }

    private void checkRange(long start, long n) {
        if (start < 0 || n < 0 || start > size || n > size - start) {
            throw new IndexOutOfBoundsException("range [" + start + ", +" + n + ") outside bitmap of " + size);
        }
    }
}
