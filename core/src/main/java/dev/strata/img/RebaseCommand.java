package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.block.qcow2.Qcow2Driver;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img rebase}: changes the backing file of a qcow2 image, as qemu-img rebase.
 *
 * <p>Unsafe mode ({@code -u}) only rewrites the name in the header. Safe mode first makes the
 * image independent of the difference: every cluster the image does not hold itself and whose
 * contents differ between the old and the new backing file is copied from the old one into the
 * image, so that what the image reads is the same before and after. Only then is the name changed,
 * so a crash in between leaves a correct image on its old backing file.
 */
@Command(name = "rebase", mixinStandardHelpOptions = true, description = "Change the backing file of an image.")
final class RebaseCommand extends ImgSubcommand {
    private static final int BUF = 2 << 20;
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(BUF).asReadOnlyBuffer();

    @Option(names = "-f", paramLabel = "FMT", description = "image format (probed when absent)")
    String format;

    @Option(names = "-b", paramLabel = "BACKING_FILE", description = "new backing file (\"\" for none)")
    String backingFile;

    @Option(names = "-F", paramLabel = "BACKING_FMT", description = "format of the new backing file")
    String backingFormat;

    @Option(names = "-u", description = "unsafe: only change the name in the header")
    boolean unsafe;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Option(
            names = {"-U", "--force-share"},
            description = "open the backing files in shared mode")
    boolean forceShare;

    @Option(
            names = {"-t", "-T"},
            hidden = true,
            description = "cache modes: accepted, ignored")
    List<String> ignored = new java.util.ArrayList<>();

    @Option(names = "-p", hidden = true, description = "progress: accepted, ignored")
    boolean progress;

    @Parameters(index = "0", paramLabel = "FILE")
    String filename;

    @Override
    int execute() throws Exception {
        if (!unsafe && backingFile == null) {
            throw new ImgFailure("Must specify backing file (-b) or use unsafe mode (-u)");
        }
        String newBacking = backingFile == null || backingFile.isEmpty() ? null : backingFile;
        try (BlockGraph graph = Drivers.newGraph()) {
            if (backingFormat != null && !graph.hasDriver(backingFormat)) {
                throw new ImgFailure("Invalid format name: '" + backingFormat + "'");
            }
            try (BlockNode node = Images.open(graph, filename, format, OpenFlags.READ_WRITE, !unsafe, err())) {
                if (!unsafe) {
                    copyDifferences(graph, node, newBacking);
                }
                if (!(node.driver() instanceof Qcow2Driver qcow2)) {
                    throw new ImgFailure(
                            "Could not change the backing file to '" + backingFile + "': Operation not supported");
                }
                if (newBacking != null && backingFormat == null) {
                    throw new ImgFailure("Could not change the backing file to '" + backingFile
                            + "': backing format must be specified");
                }
                // written through the node that holds the image lock, before the lock is let go
                try {
                    qcow2.changeBackingFile(newBacking, newBacking == null ? null : backingFormat);
                } catch (IOException e) {
                    throw new ImgFailure(
                            "Could not change the backing file to '" + backingFile + "': " + e.getMessage());
                }
            }
        }
        return 0;
    }

    /**
     * Copies into {@code image} what it reads from its old backing file wherever that differs from
     * the new one and the image does not hold the cluster itself.
     */
    private void copyDifferences(BlockGraph graph, BlockNode image, String newBacking) throws Exception {
        if (newBacking != null && backingFormat == null) {
            // fail before writing anything, with the message the end would give
            throw new ImgFailure(
                    "Could not change the backing file to '" + backingFile + "': backing format must be specified");
        }
        BlockNode oldBase = image.backing().orElse(null);
        BlockNode newBase = null;
        try {
            if (newBacking != null) {
                String path = ImageInfo.fullBackingFilename(image.filename(), newBacking);
                try {
                    newBase = graph.openImage(path, backingFormat, new OpenFlags(true, forceShare));
                } catch (IOException e) {
                    throw new ImgFailure("Could not open new backing file '" + newBacking + "': " + e.getMessage());
                }
            }
            long size = image.length();
            long oldSize = oldBase == null ? 0 : oldBase.length();
            long newSize = newBase == null ? 0 : newBase.length();
            int align = Math.max(512, image.clusterSize());
            ByteBuffer oldBuf = ByteBuffer.allocateDirect(BUF);
            ByteBuffer newBuf = ByteBuffer.allocateDirect(BUF);
            long pos = 0;
            while (pos < size) {
                // this layer's own status: only what the image does not hold can change
                List<Extent> layer = image.driver().blockStatus(pos, Math.min(1L << 30, size - pos));
                for (Extent e : layer) {
                    if (e.kind() == Extent.Kind.UNALLOCATED) {
                        copyRange(
                                image, oldBase, oldSize, newBase, newSize, e.offset(), e.end(), align, oldBuf, newBuf);
                    }
                    pos = e.end();
                }
            }
            image.flush();
        } finally {
            if (newBase != null) {
                newBase.close();
            }
        }
    }

    /** Compares [from, to) of both backing files cluster by cluster and writes the old data where they differ. */
    private static void copyRange(
            BlockNode image,
            BlockNode oldBase,
            long oldSize,
            BlockNode newBase,
            long newSize,
            long from,
            long to,
            int align,
            ByteBuffer oldBuf,
            ByteBuffer newBuf)
            throws IOException {
        long pos = from;
        while (pos < to) {
            int n = (int) Math.min(BUF, to - pos);
            readOrZero(oldBase, oldSize, pos, oldBuf, n);
            readOrZero(newBase, newSize, pos, newBuf, n);
            // unallocated runs are cluster-aligned (except at the end), so cluster pieces are whole clusters
            for (int i = 0; i < n; ) {
                int piece = (int) Math.min(n - i, align - ((pos + i) % align));
                ByteBuffer o = oldBuf.duplicate().limit(i + piece).position(i);
                ByteBuffer w = newBuf.duplicate().limit(i + piece).position(i);
                if (o.mismatch(w) >= 0) {
                    image.write(pos + i, o);
                }
                i += piece;
            }
            pos += n;
        }
    }

    private static void readOrZero(BlockNode base, long baseSize, long pos, ByteBuffer buf, int n) throws IOException {
        buf.clear().limit(n);
        int inBase = base == null ? 0 : (int) Math.max(0, Math.min(n, baseSize - pos));
        if (inBase > 0) {
            base.read(pos, buf.duplicate().limit(inBase));
        }
        if (inBase < n) {
            buf.put(inBase, ZEROS, 0, n - inBase);
        }
        buf.position(0).limit(n);
    }
}
