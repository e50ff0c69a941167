package dev.strata.img;

import dev.strata.block.BlockNode;
import dev.strata.block.dirty.BitmapException;
import dev.strata.block.dirty.DirtyBitmap;
import java.io.PrintWriter;
import java.util.List;

/**
 * {@code convert --bitmaps}: the source's persistent bitmaps copied into the target as persistent
 * bitmaps of the same name, granularity, recording state and bits, after the data, as qemu-img
 * does; the target stores them when it closes. An inconsistent bitmap stops the convert before
 * anything is written, or is left out with a warning under {@code --skip-broken-bitmaps}.
 */
final class BitmapCopy {
    private BitmapCopy() {}

    /** Refuses a source with an inconsistent persistent bitmap, unless those are to be skipped. */
    static void checkSource(BlockNode src, boolean skipBroken) throws ImgFailure {
        if (skipBroken) {
            return;
        }
        for (DirtyBitmap b : src.bitmaps().all()) {
            if (b.inImage() && b.inconsistent()) {
                throw new ImgFailure("Cannot copy inconsistent bitmap '" + b.name() + "'")
                        .withHint("Try --skip-broken-bitmaps, or use 'strata img bitmap --remove' to delete it\n");
            }
        }
    }

    /** Copies every persistent bitmap of {@code src} into {@code dst}, in the source's order. */
    static void copy(BlockNode src, BlockNode dst, boolean skipBroken, PrintWriter err) throws ImgFailure {
        for (DirtyBitmap b : List.copyOf(src.bitmaps().all())) {
            if (!b.inImage()) {
                continue;
            }
            if (b.inconsistent() && skipBroken) {
                err.println(ImgSubcommand.PREFIX + "warning: Skipping inconsistent bitmap '" + b.name() + "'");
                continue;
            }
            DirtyBitmap copy;
            try {
                copy = dst.addBitmap(b.name(), b.granularity(), !b.enabled(), true);
            } catch (BitmapException e) {
                throw new ImgFailure("Failed to create bitmap " + b.name() + ": " + e.getMessage());
            }
            try {
                dst.bitmaps().merge(copy, List.of(b));
            } catch (BitmapException e) {
                dst.bitmaps().release(copy);
                throw new ImgFailure("Failed to populate bitmap " + b.name() + ": " + e.getMessage());
            }
        }
    }
}
