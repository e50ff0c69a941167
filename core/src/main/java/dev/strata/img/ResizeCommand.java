package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img resize}: changes an image's virtual size as qemu-img resize does, with its
 * checks in its order and its messages; prints "Image resized.".
 *
 * <p>As in qemu-img, the size is always the last argument, taken before any option is looked at,
 * so "-1G" shrinks by a GiB instead of being read as an option; "+" and "-" make it relative.
 * Shrinking needs {@code --shrink}. The image opens with its backing chain, because a longer
 * backing file decides how the new area of a qcow2 image is made to read as zeros.
 *
 * <p>Persistent bitmaps follow the image, as with qemu-img: the node loads them, resizes them with
 * the disk (bits past a shrunken end go, a new area starts clean) and stores them when it closes.
 */
@Command(
        name = "resize",
        mixinStandardHelpOptions = true,
        customSynopsis = "strata img resize [-q] [--shrink] [-f FMT] [--preallocation=off] FILE [+|-]SIZE",
        description = "Change the virtual size of an image.")
final class ResizeCommand extends ImgSubcommand {
    private static final Set<String> PREALLOCATION = Set.of("off", "metadata", "falloc", "full");
    private static final String SIZE_HINT =
            "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
                    + "and exabytes, respectively.\n";
    private static final String TRY_HELP = "Try 'strata img --help' for more information\n";

    @Option(names = "-f", paramLabel = "FMT", description = "image format (probed when absent)")
    String format;

    @Option(names = "--shrink", description = "allow the image to shrink")
    boolean shrink;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Option(names = "--preallocation", paramLabel = "MODE", description = "off (metadata, falloc, full: refused)")
    String preallocation;

    @Option(names = "--object", hidden = true, description = "accepted, ignored")
    List<String> objects = new ArrayList<>();

    @Parameters(paramLabel = "ARG", description = "FILE, then the new size or (with + or -) the change of size")
    List<String> args = new ArrayList<>();

    @Override
    int execute() throws Exception {
        // the command line's own arguments ("strata img resize ARGS": what follows the name)
        List<String> all = spec.commandLine().getParseResult().originalArgs();
        List<String> raw = all.subList(all.indexOf(spec.name()) + 1, all.size());
        // qemu-img counts its own argv: "resize" and at least two more
        if (raw.size() < 2) {
            throw new ImgFailure("Not enough arguments").withHint(TRY_HELP);
        }
        String sizeText = raw.getLast();
        List<String> files = new ArrayList<>(args);
        // when picocli took the last argument as an option (or its value), qemu-img would still
        // have taken it as the size, leaving every positional argument a file name
        if (!files.isEmpty() && files.getLast().equals(sizeText)) {
            files.removeLast();
        }
        for (String f : files) {
            if (f.startsWith("-") && f.length() > 1) {
                throw new ImgFailure("unrecognized option '" + f + "'").withHint(TRY_HELP);
            }
        }
        if (preallocation != null && !PREALLOCATION.contains(preallocation)) {
            throw new ImgFailure("Invalid preallocation mode '" + preallocation + "'");
        }
        if (files.size() != 1) {
            throw new ImgFailure("Expecting image file name and size").withHint(TRY_HELP);
        }
        String filename = files.getFirst();
        int relative = sizeText.startsWith("+") ? 1 : sizeText.startsWith("-") ? -1 : 0;
        String number = relative == 0 ? sizeText : sizeText.substring(1);
        long n = parseSize(number);

        try (BlockGraph graph = Drivers.newGraph();
                BlockNode node = Images.open(graph, filename, format, OpenFlags.READ_WRITE, true, err())) {
            long current = node.length();
            // qemu-img's int64_t arithmetic, sizes of 8 EiB and more wrapping to negative
            long total = relative == 0 ? n : current + n * relative;
            if (total <= 0) {
                throw new ImgFailure("New image size must be positive");
            }
            boolean prealloc = preallocation != null && !preallocation.equals("off");
            if (prealloc && total <= current) {
                throw new ImgFailure("Preallocation can only be used for growing images");
            }
            if (total < current && !shrink) {
                throw new ImgFailure(
                        -1,
                        "Use the --shrink option to perform a shrink operation.",
                        "warning: Shrinking an image will delete all data beyond the shrunken image's end."
                                + " Before performing such an operation, make sure there is no important data"
                                + " there.");
            }
            if (prealloc) {
                throw new ImgFailure("Strata cannot preallocate the new area (--preallocation=" + preallocation
                        + "); resize without --preallocation");
            }
            node.truncate(total);
            Images.close(node);
        }
        if (!quiet) {
            out().println("Image resized.");
        }
        return 0;
    }

    private long parseSize(String number) throws ImgFailure {
        try {
            SizeArgument.Size size = SizeArgument.parse(number);
            if (size.hexWithSuffix()) {
                error("warning: Using a multiplier suffix on hex numbers is deprecated: " + number);
            }
            return size.value();
        } catch (SizeArgument.Refused e) {
            if (e.outOfRange) {
                throw new ImgFailure("Value '" + number + "' is out of range for parameter 'size'");
            }
            throw new ImgFailure("Parameter 'size' expects a non-negative number below 2^64").withHint(SIZE_HINT);
        }
    }
}
