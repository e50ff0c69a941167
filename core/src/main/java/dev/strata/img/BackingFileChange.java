package dev.strata.img;

import dev.strata.block.BlockException;
import dev.strata.block.qcow2.Qcow2Header;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * Rewrites the backing file name and format stored in a closed qcow2 image's header, through the
 * qcow2 package's header codec ({@link Qcow2Header}: parse, a copy with new fields, encode), as
 * QEMU's header update does: the backing format extension first, every other extension kept in
 * its order, the name after the end marker, the rest of the header cluster zeroed.
 *
 * <p>Crash consistency: the header cluster is written in one positional write and synced; the
 * image's data and tables are not touched, so a torn write can only leave the old or the new name
 * where a sector boundary falls inside the name (as with QEMU).
 */
final class BackingFileChange {
    private BackingFileChange() {}

    /** Sets (or with a null {@code backingFile}, removes) the backing file of the qcow2 image {@code filename}. */
    static void apply(String filename, String backingFile, String backingFormat) throws IOException {
        try (var ch = java.nio.channels.FileChannel.open(
                Path.of(filename), StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            Qcow2Header h = Qcow2Header.parse(ch);
            List<Qcow2Header.HeaderExtension> exts = new ArrayList<>();
            if (backingFile != null && backingFormat != null) {
                exts.add(new Qcow2Header.HeaderExtension(
                        Qcow2Header.EXT_BACKING_FORMAT, backingFormat.getBytes(StandardCharsets.UTF_8)));
            }
            for (Qcow2Header.HeaderExtension e : h.extensions()) {
                if (e.type() != Qcow2Header.EXT_BACKING_FORMAT) {
                    exts.add(e);
                }
            }
            Qcow2Header updated = new Qcow2Header(
                    h.version(),
                    0,
                    0,
                    h.clusterBits(),
                    h.size(),
                    h.cryptMethod(),
                    h.l1Size(),
                    h.l1TableOffset(),
                    h.refcountTableOffset(),
                    h.refcountTableClusters(),
                    h.nbSnapshots(),
                    h.snapshotsOffset(),
                    h.incompatibleFeatures(),
                    h.compatibleFeatures(),
                    h.autoclearFeatures(),
                    h.refcountOrder(),
                    h.headerLength(),
                    h.compressionType(),
                    h.additionalFields(),
                    exts,
                    backingFile);
            byte[] encoded;
            try {
                encoded = updated.encode();
            } catch (BlockException e) {
                // QEMU refuses an over-long name as EINVAL and a header that does not fit as ENOSPC
                throw e.errno() == BlockException.ENOSPC
                        ? new BlockException("No space left in the file header", BlockException.ENOSPC)
                        : new BlockException("Invalid argument", BlockException.EINVAL);
            }
            ByteBuffer cluster = ByteBuffer.allocate(h.clusterSize());
            cluster.put(encoded).clear();
            long pos = 0;
            while (cluster.hasRemaining()) {
                pos += ch.write(cluster, pos);
            }
            ch.force(true);
        }
    }
}
