package dev.strata.block.blkdebug;

import dev.strata.block.BlockException;
import dev.strata.block.BlockOptions;
import java.util.ArrayList;
import java.util.List;

/**
 * blkdebug's request limits ({@code align}, {@code max-transfer}, {@code opt-write-zero}, {@code
 * max-write-zero}, {@code opt-discard}, {@code max-discard}) with QEMU's checks, and the way QEMU's
 * block layer shapes requests by them before they reach the filter: reads and writes padded to
 * {@code align} (a write read-modify-written) and cut at {@code max-transfer}; zero-writes and
 * discards split at their alignment (a head up to the first boundary, a body in pieces of at most
 * the maximum, a tail) so each piece the rules see is what QEMU's blkdebug would see.
 *
 * @param align request alignment, 1 when not given
 * @param maxTransfer 0 for no limit
 */
record Limits(long align, long maxTransfer, long optWriteZero, long maxWriteZero, long optDiscard, long maxDiscard) {
    static final Limits NONE = new Limits(1, 0, 0, 0, 0, 0);

    /** Reads and checks the options, in QEMU's order and words. */
    static Limits parse(BlockOptions o) throws BlockException {
        long align = o.number("align", 0);
        long maxTransfer = o.number("max-transfer", 0);
        long optWriteZero = o.number("opt-write-zero", 0);
        long maxWriteZero = o.number("max-write-zero", 0);
        long optDiscard = o.number("opt-discard", 0);
        long maxDiscard = o.number("max-discard", 0);
        if (align != 0 && (align < 0 || align >= Integer.MAX_VALUE || Long.bitCount(align) != 1)) {
            throw constraint("align", align);
        }
        long a = Math.max(align, 1);
        check("max-transfer", maxTransfer, a);
        check("opt-write-zero", optWriteZero, a);
        check("max-write-zero", maxWriteZero, Math.max(optWriteZero, a));
        check("opt-discard", optDiscard, a);
        check("max-discard", maxDiscard, Math.max(optDiscard, a));
        return new Limits(a, maxTransfer, optWriteZero, maxWriteZero, optDiscard, maxDiscard);
    }

    private static void check(String name, long value, long multipleOf) throws BlockException {
        if (value != 0 && (value < 0 || value >= Integer.MAX_VALUE || value % multipleOf != 0)) {
            throw constraint(name, value);
        }
    }

    private static BlockException constraint(String name, long value) {
        return new BlockException("Cannot meet constraints with " + name + " " + value, BlockException.EINVAL);
    }

    /** {@code [offset, offset+length)} widened to {@code align}, clamped to {@code size}. */
    long[] padded(long offset, long length, long size) {
        long start = offset - offset % align;
        long end = offset + length;
        if (end % align != 0) {
            end = Math.min(size, end + align - end % align);
        }
        return new long[] {start, end};
    }

    /** The pieces of a transfer: at most {@code max-transfer} each. */
    List<long[]> transfers(long offset, long length) {
        return pieces(offset, length, 1, maxTransfer);
    }

    List<long[]> zeroWrites(long offset, long length) {
        return pieces(offset, length, Math.max(optWriteZero, align), maxWriteZero);
    }

    List<long[]> discards(long offset, long length) {
        return pieces(offset, length, Math.max(optDiscard, align), maxDiscard);
    }

    /** QEMU's split: a head up to the first multiple of {@code alignment}, a body in pieces of at most {@code max}, a tail. */
    private static List<long[]> pieces(long offset, long length, long alignment, long max) {
        List<long[]> out = new ArrayList<>();
        long head = offset % alignment;
        long tail = (offset + length) % alignment;
        long maxPiece = max == 0 ? Long.MAX_VALUE : Math.max(alignment, max - max % alignment);
        long pos = offset;
        long left = length;
        while (left > 0) {
            long n = left;
            if (head != 0) {
                n = Math.min(left, alignment - head);
                head = (head + n) % alignment;
            } else if (tail != 0 && n > alignment) {
                n -= tail;
            }
            n = Math.min(n, maxPiece);
            out.add(new long[] {pos, n});
            pos += n;
            left -= n;
        }
        return out;
    }
}
