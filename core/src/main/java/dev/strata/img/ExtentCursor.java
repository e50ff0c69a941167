package dev.strata.img;

import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import java.io.IOException;
import java.util.List;

/**
 * Walks a node's block status forwards: {@link #at} returns the extent holding an offset, asking
 * the node for a window of extents at a time so that neither a huge image nor a fragmented one
 * needs one call per byte or one list of millions of extents.
 *
 * <p>Offsets passed to {@link #at} must not decrease (the cursor only moves forwards).
 */
final class ExtentCursor {
    /** Bytes of status asked for at once. */
    private static final long WINDOW = 1L << 30;

    private final BlockNode node;
    private final long end;
    private List<Extent> window = List.of();
    private int index;

    ExtentCursor(BlockNode node, long end) {
        this.node = node;
        this.end = end;
    }

    /** The extent holding {@code pos} (which lies before the cursor's end), clipped to the end. */
    Extent at(long pos) throws IOException {
        while (index < window.size() && window.get(index).end() <= pos) {
            index++;
        }
        if (index >= window.size() || window.get(index).offset() > pos) {
            window = node.blockStatus(pos, Math.min(WINDOW, end - pos));
            index = 0;
        }
        return window.get(index);
    }
}
