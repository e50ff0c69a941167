package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.Sizes;
import dev.strata.block.drivers.Drivers;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img create}: qemu-img create for raw and qcow2, with its checks in its order
 * (format, options, backing file, size) and its "Formatting ..." line.
 *
 * <p>Without {@code -u} the backing file is opened first, both to check it and to take its size
 * when none is given; with {@code -u} it is not touched and a size is required.
 */
@Command(name = "create", mixinStandardHelpOptions = true, description = "Create a new disk image.")
final class CreateCommand extends ImgSubcommand {
    @Option(names = "-f", paramLabel = "FMT", description = "image format: qcow2 or raw (default: raw)")
    String format = "raw";

    @Option(names = "-b", paramLabel = "BACKING_FILE", description = "backing file (qcow2)")
    String backingFile;

    @Option(names = "-F", paramLabel = "BACKING_FMT", description = "format of the backing file")
    String backingFormat;

    @Option(names = "-o", paramLabel = "OPTIONS", description = "format options: cluster_size, preallocation, ...")
    List<String> optionLists = new ArrayList<>();

    @Option(names = "-u", description = "do not open the backing file (a size is then required)")
    boolean unsafe;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "FILE")
    String filename;

    @Parameters(index = "1", arity = "0..1", paramLabel = "SIZE")
    String sizeText;

    @Override
    int execute() throws Exception {
        if (!CreateOptions.canCreate(format)) {
            throw new ImgFailure(filename + ": Unknown file format '" + format + "'");
        }
        CreateOptions options;
        try {
            options = CreateOptions.parse(format, optionLists);
        } catch (IllegalArgumentException e) {
            throw new ImgFailure(filename + ": " + e.getMessage());
        }
        if (backingFile != null) {
            if (!options.supports("backing_file")) {
                throw new ImgFailure(filename + ": Backing file not supported for file format '" + format + "'");
            }
            options.set("backing_file", backingFile);
        }
        if (backingFormat != null) {
            if (!options.supports("backing_fmt")) {
                throw new ImgFailure(filename + ": Backing file format not supported for file format '" + format + "'");
            }
            options.set("backing_fmt", backingFormat);
        }
        long size = -1;
        if (sizeText != null) {
            try {
                size = Sizes.parse(sizeText, "size");
            } catch (IllegalArgumentException e) {
                throw new ImgFailure(
                        1,
                        "Invalid image size specified. You may use k, M, G, T, P or E suffixes for",
                        "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            }
        }
        size = options.size().orElse(size);
        String backing = options.get("backing_file").orElse(null);
        if (backing != null) {
            size = checkBacking(backing, options.get("backing_fmt").orElse(null), size);
        }
        if (size < 0) {
            throw new ImgFailure(filename + ": Image creation needs a size parameter");
        }
        options.set("size", Long.toString(size));
        if (!quiet) {
            out().println(options.formattingLine(filename));
            out().flush();
        }
        try (BlockGraph graph = Drivers.newGraph()) {
            ImageCreation.create(graph, format, filename, size, options, !unsafe);
        } catch (java.io.IOException | IllegalArgumentException e) {
            throw new ImgFailure(filename + ": " + e.getMessage());
        }
        return 0;
    }

    /** qemu-img's backing file checks; returns the size to use (the backing file's when none was given). */
    private long checkBacking(String backing, String backingFmt, long size) throws ImgFailure {
        if (backing.equals(filename)) {
            throw new ImgFailure(
                    filename + ": Error: Trying to create an image with the same filename as the" + " backing file");
        }
        if (backing.isEmpty()) {
            throw new ImgFailure(filename + ": Expected backing file name, got empty string");
        }
        if (unsafe) {
            if (backingFmt == null) {
                throw new ImgFailure(filename + ": Backing file specified without backing format");
            }
            return size;
        }
        String full = ImageInfo.fullBackingFilename(filename, backing);
        try (BlockGraph graph = Drivers.newGraph()) {
            String fmt = backingFmt;
            if (fmt != null && !graph.hasDriver(fmt)) {
                throw new ImgFailure(filename + ": Unknown driver '" + fmt + "'");
            }
            if (fmt == null) {
                fmt = graph.probe(full);
                throw new ImgFailure(filename + ": Backing file specified without backing format")
                        .withHint("Detected format of " + fmt + ".");
            }
            try (BlockNode node = graph.openImage(full, fmt, OpenFlags.READ_ONLY)) {
                return size >= 0 ? size : node.length();
            }
        } catch (java.io.IOException e) {
            throw new ImgFailure(filename + ": " + e.getMessage()).withHint("Could not open backing image.\n");
        }
    }
}
