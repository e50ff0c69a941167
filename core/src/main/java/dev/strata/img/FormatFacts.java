package dev.strata.img;

import dev.strata.block.BlockNode;
import dev.strata.block.qcow2.Qcow2Driver;
import dev.strata.block.qcow2.Qcow2Header;

/**
 * What qemu-img reads from an image's header that the block API does not carry: the backing file
 * as the image names it (which may differ from the path of the opened backing node, or not exist)
 * and the dirty flag. The one place {@code img} reads a format's header; for qcow2 through
 * {@link Qcow2Driver#header()}, read-only.
 *
 * @param backing the backing file named in the image, or null when there is none
 * @param dirty whether the image was not closed cleanly (qcow2's dirty bit)
 */
record FormatFacts(BackingFile backing, boolean dirty) {
    static final FormatFacts NONE = new FormatFacts(null, false);

    /** A backing file as named inside an image: the stored name and its format (null when not stored). */
    record BackingFile(String filename, String format) {}

    /** The facts of an open node, from its driver where the driver records them. */
    static FormatFacts of(BlockNode node) {
        if (node.driver() instanceof Qcow2Driver q) {
            Qcow2Header h = q.header();
            BackingFile backing = h.backingFile() == null || h.backingFile().isEmpty()
                    ? null
                    : new BackingFile(h.backingFile(), h.backingFormat().orElse(null));
            return new FormatFacts(backing, h.isDirty());
        }
        return NONE;
    }
}
