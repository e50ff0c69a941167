package dev.strata.nbd;

import dev.strata.block.BlockNode;
import dev.strata.block.dirty.DirtyBitmap;
import java.util.Optional;

/**
 * The lookups block-export-add makes as qemu-storage-daemon makes them: export ids QEMU accepts,
 * and exported bitmaps found on the node or below it (QEMU's filter-or-COW chain, where a raw
 * node without an offset is a filter over its file).
 */
final class ExportChecks {
    private ExportChecks() {}

    /** QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
    static boolean wellFormed(String id) {
        if (id.isEmpty() || !isAsciiLetter(id.charAt(0))) {
            return false;
        }
        for (int i = 1; i < id.length(); i++) {
            char c = id.charAt(i);
            if (!isAsciiLetter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '_') {
                return false;
            }
        }
        return true;
    }

    private static boolean isAsciiLetter(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }

    /** The bitmap on the node, else on the nodes below it (QEMU's filter-or-COW chain). */
    static DirtyBitmap findOnChain(BlockNode node, String name, boolean writable) throws NbdException {
        for (BlockNode n = node; n != null; n = below(n)) {
            Optional<DirtyBitmap> b = n.bitmaps().find(name);
            if (b.isPresent()) {
                if (!writable && !n.readOnly() && b.get().enabled()) {
                    throw new NbdException("Enabled bitmap '" + name + "' incompatible with readonly export");
                }
                return b.get();
            }
        }
        throw new NbdException("Bitmap '" + name + "' is not found");
    }

    private static BlockNode below(BlockNode n) {
        Optional<BlockNode> backing = n.backing();
        if (backing.isPresent()) {
            return backing.get();
        }
        // raw without an offset is a filter over its file in QEMU's graph
        return n.driverName().equals("raw") ? n.file().orElse(null) : null;
    }

    /** The node whose bitmap list holds {@code b} (the export's node or one below it). */
    static BlockNode ownerOf(BlockNode node, DirtyBitmap b) {
        for (BlockNode n = node; n != null; n = below(n)) {
            if (n.bitmaps().all().contains(b)) {
                return n;
            }
        }
        return node;
    }
}
