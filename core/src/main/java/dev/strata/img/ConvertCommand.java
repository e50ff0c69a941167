package dev.strata.img;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.CompressedWriter;
import dev.strata.block.OpenFlags;
import dev.strata.block.Sizes;
import dev.strata.block.drivers.Drivers;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img convert}: copies an image into a new (or, with {@code -n}, an existing) image
 * of another format, keeping holes, with qemu-img convert's flags and checks.
 *
 * <p>The copy itself is {@link ImageCopy}: block status says which runs to read at all, zero
 * detection of the data read says which parts to write. With {@code -c} every cluster that is
 * not zero is written compressed through the target driver's {@link CompressedWriter}.
 */
@Command(name = "convert", mixinStandardHelpOptions = true, description = "Convert an image to another format.")
final class ConvertCommand extends ImgSubcommand {
    @Option(names = "-f", paramLabel = "FMT", description = "source format (probed when absent)")
    String sourceFormat;

    @Option(names = "-O", paramLabel = "OUTPUT_FMT", description = "target format: raw or qcow2 (default: raw)")
    String targetFormat = "raw";

    @Option(names = "-o", paramLabel = "OPTIONS", description = "target format options (cluster_size, ...)")
    List<String> optionLists = new ArrayList<>();

    @Option(
            names = "-B",
            paramLabel = "BACKING_FILE",
            description = "make the target a copy-on-write overlay of this file")
    String backingFile;

    @Option(names = "-F", paramLabel = "BACKING_FMT", description = "format of the backing file")
    String backingFormat;

    @Option(names = "-n", description = "do not create the target (it must exist and be large enough)")
    boolean noCreate;

    @Option(names = "-c", description = "write compressed clusters (qcow2)")
    boolean compress;

    @Option(
            names = "-S",
            paramLabel = "SPARSE_SIZE",
            description = "consecutive zero bytes that make a hole in the target (default 4k; 0: no holes)")
    String sparseSizeText;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Option(
            names = {"-U", "--force-share"},
            description = "open the source in shared mode")
    boolean forceShare;

    @Option(names = "-t", paramLabel = "CACHE", description = "target cache mode (default: unsafe, no flush)")
    String cache = "unsafe";

    @Option(
            names = "-C",
            description = "copy offloading: data moves file to file inside the kernel (copy_file_range),"
                    + " without zero detection")
    boolean copyOffload;

    @Option(
            names = {"-p", "-W"},
            hidden = true,
            description = "accepted for compatibility, ignored")
    boolean ignoredFlag;

    @Option(
            names = {"-T", "-m", "-r"},
            hidden = true,
            description = "accepted for compatibility, ignored")
    List<String> ignoredValues = new ArrayList<>();

    @Option(names = "--bitmaps", description = "copy the source's persistent bitmaps (qcow2 target)")
    boolean bitmaps;

    @Option(names = "--skip-broken-bitmaps", description = "with --bitmaps: leave out inconsistent bitmaps")
    boolean skipBrokenBitmaps;

    @Parameters(index = "0", paramLabel = "FILENAME")
    String source;

    @Parameters(index = "1", paramLabel = "OUTPUT_FILENAME")
    String target;

    @Override
    int execute() throws Exception {
        if (copyOffload && compress) {
            throw new ImgFailure("Cannot enable copy offloading when -c is used");
        }
        if (copyOffload && sparseSizeText != null) {
            throw new ImgFailure("Cannot enable copy offloading when -S is used");
        }
        long minSparse = Sizes.parse(sparseSizeText == null ? "4k" : sparseSizeText, "sparse size");
        if (minSparse % 512 != 0 || minSparse > 16L << 20) {
            throw new ImgFailure("Invalid buffer size for sparse output specified. Valid sizes are multiples of 512"
                    + " up to 16777216. Select 0 to disable sparse detection (fully allocates output).");
        }
        if (noCreate && !optionLists.isEmpty()) {
            throw new ImgFailure("-o has no effect when skipping image creation");
        }
        if (!noCreate && !CreateOptions.canCreate(targetFormat)) {
            throw new ImgFailure("Unknown file format '" + targetFormat + "'");
        }
        if (skipBrokenBitmaps && !bitmaps) {
            throw new ImgFailure("Use of --skip-broken-bitmaps requires --bitmaps");
        }
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode src =
                        Images.open(graph, source, sourceFormat, new OpenFlags(true, forceShare), true, err())) {
            long size = src.length();
            if (bitmaps) {
                BitmapCopy.checkSource(src, skipBrokenBitmaps);
            }
            if (compress && !targetFormat.equals("qcow2")) {
                throw new ImgFailure("Compression not supported for this file format");
            }
            if (!noCreate) {
                createTarget(graph, ImageCreation.roundUp512(size));
            } else if (backingFile != null) {
                throw new ImgFailure("-B has no effect when skipping image creation");
            }
            try (BlockNode dst = Images.open(
                    graph,
                    target,
                    targetFormat,
                    OpenFlags.READ_WRITE.withNoFlush(cache.equals("unsafe")),
                    true,
                    err())) {
                if (noCreate && dst.length() < size) {
                    throw new ImgFailure("output file is smaller than input file");
                }
                if (bitmaps && !dst.driver().supportsPersistentBitmaps()) {
                    throw new ImgFailure("Format driver '" + dst.driverName() + "' does not support bitmaps");
                }
                boolean targetIsNew = !noCreate;
                // the target counts only once convert has finished, as with qemu-img, whose qcow2
                // caches hold the metadata until the end: so do the target's, which saves two small
                // writes (an L2 and a refcount update) per data write; close writes it back
                dst.driver().setMetadataWriteback(true);
                CompressedWriter compressor = null;
                if (compress) {
                    if (!(dst.driver() instanceof CompressedWriter w)) {
                        throw new ImgFailure("Compression not supported for this file format");
                    }
                    compressor = w;
                }
                ImageCopy copy = new ImageCopy(
                        src,
                        dst,
                        size,
                        minSparse,
                        targetIsNew && backingFile == null,
                        backingFile != null,
                        compressor,
                        copyOffload);
                copy.run();
                if (bitmaps) {
                    BitmapCopy.copy(src, dst, skipBrokenBitmaps, err());
                }
                if (!cache.equals("unsafe")) {
                    dst.flush();
                }
            }
        }
        return 0;
    }

    private void createTarget(BlockGraph graph, long size) throws ImgFailure {
        CreateOptions options;
        try {
            options = CreateOptions.parse(targetFormat, optionLists);
            if (backingFile != null) {
                if (!options.supports("backing_file")) {
                    throw new ImgFailure("Backing file not supported for file format '" + targetFormat + "'");
                }
                options.set("backing_file", backingFile);
            }
            if (backingFormat != null && options.supports("backing_fmt")) {
                options.set("backing_fmt", backingFormat);
            }
        } catch (IllegalArgumentException e) {
            throw new ImgFailure(e.getMessage());
        }
        if (options.get("backing_file").isPresent()) {
            backingFile = options.get("backing_file").get();
            if (options.get("backing_fmt").isEmpty()) {
                throw new ImgFailure("Use of backing file requires explicit backing format");
            }
        }
        options.set("size", Long.toString(size));
        try {
            ImageCreation.create(graph, targetFormat, target, size, options, true);
        } catch (IOException | IllegalArgumentException e) {
            String msg = e instanceof BlockException || e instanceof IllegalArgumentException
                    ? e.getMessage()
                    : e.toString();
            throw new ImgFailure(target + ": error while converting " + targetFormat + ": " + msg);
        }
    }
}
