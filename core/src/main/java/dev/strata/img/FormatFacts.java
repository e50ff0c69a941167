package dev.strata.img;

import dev.strata.block.BlockNode;

/**
 * What qemu-img reads from an image's header that the block API does not carry: the backing file
 * as the image names it (which may differ from the path of the opened backing node, or not exist)
 * and the dirty flag.
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
        return NONE;
    }
}
