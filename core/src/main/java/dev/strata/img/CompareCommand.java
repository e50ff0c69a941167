package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img compare}: whether two images read the same, with qemu-img compare's messages
 * and exit codes (0 identical, 1 different, 2 error).
 *
 * <p>Runs that read as zeros in both images are skipped without reading; elsewhere both images are
 * read in 2 MiB pieces into two reused buffers, the second image on a helper thread while this
 * thread reads the first (the reads are most of the time). A mismatch is reported at the start of the first
 * differing 512-byte sector, as qemu-img reports it. Images of different sizes compare equal when
 * the larger one reads as zeros past the end of the smaller one, unless {@code -s} is given.
 */
@Command(
        name = "compare",
        mixinStandardHelpOptions = true,
        description = "Check whether two images have the same content.")
final class CompareCommand extends ImgSubcommand {
    private static final int BUF = 2 << 20;
    private static final int SECTOR = 512;
    private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(BUF).asReadOnlyBuffer();

    @Option(names = "-f", paramLabel = "FMT", description = "format of the first image (probed when absent)")
    String format1;

    @Option(names = "-F", paramLabel = "FMT", description = "format of the second image (probed when absent)")
    String format2;

    @Option(
            names = {"-s", "--strict"},
            description = "strict mode: fail on different image size or allocation")
    boolean strict;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Option(
            names = {"-U", "--force-share"},
            description = "open the images in shared mode")
    boolean forceShare;

    @Parameters(index = "0", paramLabel = "FILE1")
    String filename1;

    @Parameters(index = "1", paramLabel = "FILE2")
    String filename2;

    // allocated when the command runs (picocli builds every subcommand object for each command line)
    private ByteBuffer buf1;
    private ByteBuffer buf2;
    private ExecutorService secondReader;

    @Override
    int errorExitCode() {
        return 2;
    }

    @Override
    int execute() throws Exception {
        OpenFlags flags = new OpenFlags(true, forceShare);
        buf1 = ByteBuffer.allocateDirect(BUF);
        buf2 = ByteBuffer.allocateDirect(BUF);
        try (ExecutorService reader = Executors.newSingleThreadExecutor();
                BlockGraph graph = Drivers.newGraph();
                BlockNode a = Images.open(graph, filename1, format1, flags, true, err());
                BlockNode b = Images.open(graph, filename2, format2, flags, true, err())) {
            secondReader = reader;
            long size1 = a.length();
            long size2 = b.length();
            if (strict && size1 != size2) {
                say("Strict mode: Image size mismatch!");
                return 1;
            }
            long common = Math.min(size1, size2);
            ExtentCursor c1 = new ExtentCursor(a, size1);
            ExtentCursor c2 = new ExtentCursor(b, size2);
            long pos = 0;
            while (pos < common) {
                Extent e1 = c1.at(pos);
                Extent e2 = c2.at(pos);
                long chunk = Math.min(Math.min(e1.end(), e2.end()), common) - pos;
                if (strict && !sameStatus(e1, e2)) {
                    say("Strict mode: Offset " + pos + " block status mismatch!");
                    return 1;
                }
                long mismatch = -1;
                if (e1.isZero() && e2.isZero()) {
                    // both read as zeros: nothing to read
                } else if (e1.kind() == Extent.Kind.DATA && e2.kind() == Extent.Kind.DATA) {
                    mismatch = firstDifference(a, b, pos, chunk);
                } else {
                    mismatch = firstNonZero(e1.kind() == Extent.Kind.DATA ? a : b, pos, chunk);
                }
                if (mismatch >= 0) {
                    say("Content mismatch at offset " + mismatch + "!");
                    return 1;
                }
                pos += chunk;
            }
            if (size1 != size2) {
                say("Warning: Image size mismatch!");
                BlockNode over = size1 > size2 ? a : b;
                long overSize = Math.max(size1, size2);
                ExtentCursor c = size1 > size2 ? c1 : c2;
                while (pos < overSize) {
                    Extent e = c.at(pos);
                    if (e.kind() == Extent.Kind.DATA) {
                        long mismatch = firstNonZero(over, pos, e.end() - pos);
                        if (mismatch >= 0) {
                            say("Content mismatch at offset " + mismatch + "!");
                            return 1;
                        }
                    }
                    pos = e.end();
                }
            }
            say("Images are identical.");
            return 0;
        }
    }

    private void say(String line) {
        if (!quiet) {
            out().println(line);
        }
    }

    /** QEMU's block status flags that strict mode compares: allocated, zero, data. */
    private static boolean sameStatus(Extent e1, Extent e2) {
        return e1.kind() == e2.kind();
    }

    /** Offset of the first 512-byte sector that differs between the images in [pos, pos+length), or -1. */
    private long firstDifference(BlockNode a, BlockNode b, long pos, long length) throws IOException {
        long done = 0;
        while (done < length) {
            int n = (int) Math.min(BUF, length - done);
            long at = pos + done;
            Future<?> second = secondReader.submit(() -> {
                b.read(at, buf2.clear().limit(n));
                return null;
            });
            a.read(at, buf1.clear().limit(n));
            try {
                second.get();
            } catch (ExecutionException e) {
                if (e.getCause() instanceof IOException io) {
                    throw io;
                }
                throw new IOException(e.getCause());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted", e);
            }
            int i = buf1.flip().mismatch(buf2.flip());
            if (i >= 0) {
                return pos + done + (i / SECTOR) * SECTOR;
            }
            done += n;
        }
        return -1;
    }

    /** Offset of the first 512-byte sector in [pos, pos+length) that is not all zeros, or -1. */
    private long firstNonZero(BlockNode node, long pos, long length) throws IOException {
        long done = 0;
        while (done < length) {
            int n = (int) Math.min(BUF, length - done);
            node.read(pos + done, buf1.clear().limit(n));
            int i = buf1.flip().mismatch(ZEROS.duplicate().limit(n));
            if (i >= 0) {
                return pos + done + (i / SECTOR) * SECTOR;
            }
            done += n;
        }
        return -1;
    }
}
