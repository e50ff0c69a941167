package dev.strata.block;

/**
 * One run of bytes with the same allocation status, as block status reports it.
 *
 * <p>At driver level {@code depth} is 0 and {@link Kind#UNALLOCATED} means "this layer does not
 * hold these bytes; ask the backing child". At node level ({@link BlockNode#blockStatus}) the
 * backing chain has been walked: {@code depth} is how many layers down the bytes were found, and
 * {@code UNALLOCATED} means no layer holds them (they read as zeros); its depth is then the index
 * of the last layer searched, as in {@code qemu-img map}.
 *
 * @param offset guest offset of the run
 * @param length bytes in the run, always &gt; 0
 * @param kind what reading the run returns
 * @param depth layer that holds the run (0 = the node asked)
 * @param hostOffset where the run starts in the host file of the layer that holds it, or -1 when
 *     it has no single host location (zero clusters, compressed clusters, unallocated runs)
 * @param hostFile file name of that host file, or null when {@code hostOffset} is -1
 */
public record Extent(long offset, long length, Kind kind, int depth, long hostOffset, String hostFile) {

    /** What a run of bytes reads as. */
    public enum Kind {
        /** Allocated with data (may still be zero bytes, as QEMU's BDRV_BLOCK_DATA). */
        DATA,
        /** Allocated and known to read as zeros (zero flag, hole in a file). */
        ZERO,
        /** Not allocated in this layer (driver level) or in any layer (node level). */
        UNALLOCATED
    }

    public Extent {
        if (length <= 0) {
            throw new IllegalArgumentException("extent length must be positive: " + length);
        }
    }

    public static Extent of(long offset, long length, Kind kind) {
        return new Extent(offset, length, kind, 0, -1, null);
    }

    public long end() {
        return offset + length;
    }

    public boolean isZero() {
        return kind != Kind.DATA;
    }

    public Extent withDepth(int newDepth) {
        return new Extent(offset, length, kind, newDepth, hostOffset, hostFile);
    }

    /** The part of this extent inside [from, to), shifted host offset included. */
    public Extent slice(long from, long to) {
        long s = Math.max(from, offset);
        long e = Math.min(to, end());
        long host = hostOffset < 0 ? -1 : hostOffset + (s - offset);
        return new Extent(s, e - s, kind, depth, host, hostFile);
    }

    /**
     * Adds {@code e} to a list of adjacent extents, merged into the last one when it continues it:
     * same kind and depth, and the host bytes continue in the same file (or neither has any).
     */
    public static void appendMerged(java.util.List<Extent> out, Extent e) {
        if (!out.isEmpty()) {
            Extent last = out.getLast();
            boolean hostContiguous = last.hostOffset() < 0
                    ? e.hostOffset() < 0
                    : e.hostOffset() == last.hostOffset() + last.length()
                            && java.util.Objects.equals(last.hostFile(), e.hostFile());
            if (last.end() == e.offset() && last.kind() == e.kind() && last.depth() == e.depth() && hostContiguous) {
                out.set(
                        out.size() - 1,
                        new Extent(
                                last.offset(),
                                last.length() + e.length(),
                                last.kind(),
                                last.depth(),
                                last.hostOffset(),
                                last.hostFile()));
                return;
            }
        }
        out.add(e);
    }
}
