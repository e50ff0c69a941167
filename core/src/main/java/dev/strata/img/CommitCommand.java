package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.block.qcow2.Qcow2Create;
import dev.strata.block.qcow2.Qcow2Driver;
import dev.strata.block.qcow2.Qcow2Header;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img commit}: writes what an overlay holds into its backing file, then empties the
 * overlay (unless {@code -d}), as qemu-img commit does; prints "Image committed.".
 *
 * <p>The overlay is read through its own layer only (opened without its backing chain), so only
 * the clusters it holds are copied: data as data, zero clusters as zero writes. The backing file
 * is opened read-write on its own, with its own chain below it for partial-cluster writes.
 *
 * <p>Emptying: the block API has no "make empty" (a discard leaves zero clusters that would hide
 * the committed data), so the overlay is re-created with the same size, cluster size and backing
 * file, which is what QEMU's own fast path does (it rewrites the tables of an image without
 * snapshots or bitmaps). Images this cannot reproduce (persistent bitmaps, snapshots, version 2,
 * other refcount widths or compression types) are refused before anything is written, unless
 * {@code -d} keeps the overlay as it is.
 */
@Command(name = "commit", mixinStandardHelpOptions = true, description = "Commit an image into its backing file.")
final class CommitCommand extends ImgSubcommand {
    private static final int BUF = 2 << 20;

    @Option(names = "-f", paramLabel = "FMT", description = "image format (probed when absent)")
    String format;

    @Option(names = "-d", description = "do not empty the image after committing")
    boolean keep;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Option(
            names = {"-t", "-r"},
            hidden = true,
            description = "cache mode / rate limit: accepted, ignored")
    List<String> ignored = new java.util.ArrayList<>();

    @Option(names = "-p", hidden = true, description = "progress: accepted, ignored")
    boolean progress;

    @Parameters(index = "0", paramLabel = "FILE")
    String filename;

    @Override
    int execute() throws Exception {
        Qcow2Create.Options recreate;
        String basePath;
        String baseFormat;
        try (BlockGraph graph = Drivers.newGraph()) {
            // read-write, as qemu-img commit opens it: the image lock keeps every other writer and
            // reader out until the overlay has been emptied
            try (BlockNode top = Images.open(graph, filename, format, OpenFlags.READ_WRITE, false, err())) {
                FormatFacts facts = FormatFacts.of(top);
                if (facts.backing() == null) {
                    throw new ImgFailure("Image does not have a backing file");
                }
                basePath =
                        ImageInfo.fullBackingFilename(filename, facts.backing().filename());
                baseFormat = facts.backing().format();
                recreate = keep ? null : recreateOptions(top);
                try (BlockNode base = openBase(graph, basePath, baseFormat)) {
                    if (base.length() < top.length()) {
                        throw new ImgFailure("Strata cannot grow the backing file '" + basePath + "' (" + base.length()
                                + " bytes) to the image's size (" + top.length() + " bytes)");
                    }
                    copyLayer(top, base);
                    base.flush();
                }
            }
            if (recreate != null) {
                // emptied by creating it anew: the create takes the image lock again, so a process
                // that opened the overlay in the moment between fails this, and loses nothing
                Qcow2Create.create(graph, filename, recreate);
            }
        }
        if (!quiet) {
            out().println("Image committed.");
        }
        return 0;
    }

    private BlockNode openBase(BlockGraph graph, String path, String fmt) throws ImgFailure {
        try {
            String f = fmt != null ? fmt : graph.probe(path);
            return graph.add(BlockOptions.empty()
                    .put("driver", f)
                    .put("file", BlockOptions.empty().put("driver", "file").put("filename", path)));
        } catch (IOException e) {
            throw new ImgFailure("Could not open backing file '" + path + "': " + e.getMessage());
        }
    }

    /** How to re-create the emptied overlay, or a refusal when re-creating would lose something. */
    private static Qcow2Create.Options recreateOptions(BlockNode top) throws ImgFailure, IOException {
        if (!(top.driver() instanceof Qcow2Driver q)) {
            throw new ImgFailure("Strata can only empty qcow2 images after a commit; use -d to keep the image");
        }
        Qcow2Header h = q.header();
        String why = null;
        if (h.version() < 3) {
            why = "it is a version 2 (compat=0.10) image";
        } else if (h.bitmaps().isPresent()) {
            why = "it has persistent bitmaps";
        } else if (h.nbSnapshots() > 0) {
            why = "it has internal snapshots";
        } else if (h.refcountBits() != 16) {
            why = "its refcounts are not 16 bits wide";
        } else if (h.compressionType() != Qcow2Header.COMPRESSION_DEFLATE) {
            why = "it uses zstd compression";
        }
        if (why != null) {
            throw new ImgFailure("Strata cannot empty '" + top.filename() + "' after the commit because " + why
                    + "; use -d to commit without emptying it");
        }
        return Qcow2Create.Options.of(top.length())
                .withClusterSize(h.clusterSize())
                .withBacking(h.backingFile(), h.backingFormat().orElse(null))
                .withLazyRefcounts(h.lazyRefcounts());
    }

    /** Copies what {@code top}'s own layer holds into {@code base}: data as data, zero clusters as zeros. */
    private static void copyLayer(BlockNode top, BlockNode base) throws IOException {
        long size = top.length();
        ByteBuffer buf = ByteBuffer.allocateDirect(BUF);
        ExtentCursor cursor = new ExtentCursor(top, size);
        long pos = 0;
        while (pos < size) {
            Extent e = cursor.at(pos);
            switch (e.kind()) {
                case DATA -> {
                    for (long p = pos; p < e.end(); ) {
                        int n = (int) Math.min(BUF, e.end() - p);
                        top.read(p, buf.clear().limit(n));
                        base.write(p, buf.flip());
                        p += n;
                    }
                }
                // as QEMU's commit: the base's clusters are released, not filled with zeros
                case ZERO -> base.writeZeroes(pos, e.length(), true);
                case UNALLOCATED -> {
                    // not in the overlay: the backing file already has it
                }
            }
            pos = e.end();
        }
    }
}
