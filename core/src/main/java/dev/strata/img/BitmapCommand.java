package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.dirty.BitmapException;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.dirty.DirtyBitmaps;
import dev.strata.block.drivers.Drivers;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img bitmap}: qemu-img bitmap, the persistent bitmaps of an image changed without a
 * daemon. The operations run in the order given, each with the rules and words of its QMP command
 * (the node's persistent bitmaps are loaded when the image opens and stored when it closes); the
 * first that fails stops the rest with "Operation OP on bitmap NAME failed: ...", and what the
 * earlier ones did is kept, as with qemu-img.
 */
@Command(
        name = "bitmap",
        mixinStandardHelpOptions = true,
        customSynopsis = "strata img bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)..."
                + " [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [-f FMT] FILE BITMAP",
        description = "Add, remove, clear, enable, disable or merge persistent bitmaps of a qcow2 image.")
final class BitmapCommand extends ImgSubcommand {
    /** One operation, in command-line order; {@code source} is --merge's bitmap. */
    private record Action(String op, String source) {}

    private final List<Action> actions = new ArrayList<>();

    @Option(names = "--add", description = "add BITMAP (recording; -g for its granularity)")
    void add(boolean on) {
        actions.add(new Action("add", null));
    }

    @Option(names = "--remove", description = "remove BITMAP from the image")
    void remove(boolean on) {
        actions.add(new Action("remove", null));
    }

    @Option(names = "--clear", description = "clear every bit of BITMAP")
    void clear(boolean on) {
        actions.add(new Action("clear", null));
    }

    @Option(names = "--enable", description = "make BITMAP record writes")
    void enable(boolean on) {
        actions.add(new Action("enable", null));
    }

    @Option(names = "--disable", description = "stop BITMAP recording writes")
    void disable(boolean on) {
        actions.add(new Action("disable", null));
    }

    @Option(
            names = "--merge",
            paramLabel = "SOURCE",
            description = "merge bitmap SOURCE (of -b's image, or this one) into BITMAP")
    void merge(String source) {
        actions.add(new Action("merge", source));
    }

    @Option(names = "-b", paramLabel = "SOURCE_FILE", description = "the image --merge takes its bitmap from")
    String sourceFile;

    @Option(names = "-F", paramLabel = "SOURCE_FMT", description = "format of SOURCE_FILE")
    String sourceFormat;

    @Option(names = "-g", paramLabel = "GRANULARITY", description = "granularity of the bitmap --add makes (bytes)")
    String granularityText;

    @Option(names = "-f", paramLabel = "FMT", description = "image format (probed when absent)")
    String format;

    @Option(names = "--object", hidden = true, description = "accepted, ignored")
    List<String> objects = new ArrayList<>();

    @Parameters(paramLabel = "ARG", description = "FILE, then BITMAP")
    List<String> args = new ArrayList<>();

    @Override
    int execute() throws Exception {
        long granularity = 0;
        if (granularityText != null) {
            try {
                granularity = SizeArgument.parse(granularityText).value();
            } catch (SizeArgument.Refused e) {
                throw new ImgFailure(
                        -1,
                        "Invalid granularity specified. You may use k, M, G, T, P or E suffixes for",
                        "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            }
        }
        if (actions.isEmpty()) {
            throw new ImgFailure("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
        }
        if (granularity != 0 && actions.stream().noneMatch(a -> a.op().equals("add"))) {
            throw new ImgFailure("granularity only supported with --add");
        }
        if (sourceFormat != null && sourceFile == null) {
            throw new ImgFailure("-F only supported with -b");
        }
        if (sourceFile != null && actions.stream().noneMatch(a -> a.op().equals("merge"))) {
            throw new ImgFailure("Merge bitmap source file only supported with --merge");
        }
        if (args.size() != 2) {
            throw new ImgFailure("Expecting filename and bitmap name");
        }
        String filename = args.get(0);
        String name = args.get(1);
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode node = Images.open(graph, filename, format, OpenFlags.READ_WRITE, true, err())) {
            BlockNode source = sourceFile == null
                    ? node
                    : Images.open(graph, sourceFile, sourceFormat, OpenFlags.READ_ONLY, true, err());
            try {
                for (Action a : actions) {
                    try {
                        apply(a, node, source, name, granularity);
                    } catch (BitmapException e) {
                        throw new ImgFailure(
                                "Operation " + a.op() + " on bitmap " + name + " failed: " + e.getMessage());
                    }
                }
            } finally {
                if (source != node) {
                    source.close();
                }
            }
            Images.close(node);
        }
        return 0;
    }

    /** One operation, as its QMP command does it (persistent for add, as qemu-img asks). */
    private static void apply(Action a, BlockNode node, BlockNode source, String name, long granularity)
            throws Exception {
        DirtyBitmaps bitmaps = node.bitmaps();
        switch (a.op()) {
            case "add" -> node.addBitmap(name, granularity != 0 ? granularity : null, false, true);
            case "remove" -> bitmaps.remove(name);
            case "clear" -> bitmaps.clear(name);
            case "enable" -> bitmaps.enable(name);
            case "disable" -> bitmaps.disable(name);
            case "merge" -> {
                DirtyBitmap target = bitmaps.lookup(name);
                DirtyBitmap from = source.bitmaps().lookup(a.source());
                bitmaps.merge(target, List.of(from));
            }
            default -> throw new IllegalStateException("unknown operation " + a.op());
        }
    }
}
