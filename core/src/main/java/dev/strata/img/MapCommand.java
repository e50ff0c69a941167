package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import dev.strata.block.OpenFlags;
import dev.strata.block.Sizes;
import dev.strata.block.drivers.Drivers;
import java.io.IOException;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.TreeSet;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img map}: where an image's bytes live, as qemu-img map prints it (human: the data
 * runs with their host offsets; JSON: every run with start, length, depth, present, zero, data and
 * offset).
 *
 * <p>Runs come from {@link BlockNode#blockStatus} and are merged as qemu-img merges them. One
 * difference of model is corrected here: past the end of a shorter backing file QEMU stops at the
 * layer whose backing file ended (the bytes read as zeros there), while the node reports the layer
 * below; {@link #qemuDepth} recomputes QEMU's depth.
 */
@Command(name = "map", mixinStandardHelpOptions = true, description = "Dump the metadata of an image.")
final class MapCommand extends ImgSubcommand {
    /** Bytes asked of block status at once, so a huge image never builds one huge extent list. */
    private static final long STATUS_CHUNK = 1L << 32;

    @Option(names = "-f", paramLabel = "FMT", description = "image format (probed when absent)")
    String format;

    @Option(names = "--output", paramLabel = "human|json", description = "output format (default: human)")
    String output = "human";

    @Option(
            names = {"-s", "--start-offset"},
            paramLabel = "OFFSET",
            description = "start at this offset")
    String startText;

    @Option(
            names = {"-l", "--max-length"},
            paramLabel = "LENGTH",
            description = "map at most this many bytes")
    String maxLengthText;

    @Option(
            names = {"-U", "--force-share"},
            description = "open the image in shared mode")
    boolean forceShare;

    @Parameters(index = "0", paramLabel = "FILE")
    String filename;

    /** One run as qemu-img map describes it. */
    record Entry(
            long start, long length, int depth, boolean present, boolean zero, boolean data, long offset, String file) {
        boolean hasOffset() {
            return offset >= 0;
        }

        boolean mergeableWith(Entry next) {
            return length > 0
                    && zero == next.zero
                    && data == next.data
                    && depth == next.depth
                    && present == next.present
                    && Objects.equals(file, next.file)
                    && hasOffset() == next.hasOffset()
                    && (!hasOffset() || offset + length == next.offset);
        }

        Entry extend(long more) {
            return new Entry(start, length + more, depth, present, zero, data, offset, file);
        }
    }

    @Override
    int execute() throws Exception {
        boolean json = OutputFormat.parse(output);
        long start = startText == null ? 0 : Sizes.parse(startText, "start offset");
        long maxLength = maxLengthText == null ? -1 : Sizes.parse(maxLengthText, "max length");
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode node = Images.open(graph, filename, format, new OpenFlags(true, forceShare), true, err())) {
            PrintWriter out = out();
            if (json) {
                out.print('[');
            } else {
                out.print(String.format(Locale.ROOT, "%-16s%-16s%-16s%s%n", "Offset", "Length", "Mapped to", "File"));
            }
            long length = node.length();
            if (maxLength >= 0) {
                length = Math.min(start + maxLength, length);
            }
            Entry curr = new Entry(start, 0, 0, false, false, false, -1, null);
            long pos = start;
            while (pos < length) {
                for (Extent e : qemuExtents(node, node.blockStatus(pos, Math.min(STATUS_CHUNK, length - pos)))) {
                    Entry next = entry(node, e);
                    if (curr.mergeableWith(next)) {
                        curr = curr.extend(next.length());
                        continue;
                    }
                    if (curr.length() > 0 && !print(out, curr, next, json)) {
                        return 1;
                    }
                    curr = next;
                }
                pos = curr.start() + curr.length();
            }
            if (!print(out, curr, null, json)) {
                return 1;
            }
            if (json) {
                out.print("]\n");
            }
        }
        return 0;
    }

    private static Entry entry(BlockNode node, Extent e) throws IOException {
        return switch (e.kind()) {
            case DATA -> new Entry(e.offset(), e.length(), e.depth(), true, false, true, e.hostOffset(), file(e));
            case ZERO -> new Entry(e.offset(), e.length(), e.depth(), true, true, false, e.hostOffset(), file(e));
            case UNALLOCATED -> new Entry(e.offset(), e.length(), qemuDepth(node, e), false, true, false, -1, null);
        };
    }

    private static String file(Extent e) {
        return e.hostOffset() >= 0 ? e.hostFile() : null;
    }

    /**
     * The node's extents with unallocated runs cut where a backing file of the layers they passed
     * through ends (the node merges across those ends; QEMU stops at different layers on each side).
     */
    private static List<Extent> qemuExtents(BlockNode top, List<Extent> extents) throws IOException {
        List<Extent> out = new ArrayList<>();
        for (Extent e : extents) {
            if (e.kind() != Extent.Kind.UNALLOCATED || e.depth() == 0) {
                out.add(e);
                continue;
            }
            TreeSet<Long> cuts = new TreeSet<>();
            BlockNode layer = top;
            for (int d = 0; d < e.depth() && layer.backing().isPresent(); d++) {
                layer = layer.backing().get();
                long end = layer.length();
                if (end > e.offset() && end < e.end()) {
                    cuts.add(end);
                }
            }
            long from = e.offset();
            for (long cut : cuts) {
                out.add(e.slice(from, cut));
                from = cut;
            }
            out.add(e.slice(from, e.end()));
        }
        return out;
    }

    /**
     * QEMU's depth for an unallocated run: the first layer that has no backing file, or whose
     * backing file ends at or before the run (both read as zeros there).
     */
    static int qemuDepth(BlockNode top, Extent e) throws IOException {
        BlockNode layer = top;
        int depth = 0;
        while (depth < e.depth()) {
            BlockNode backing = layer.backing().orElse(null);
            if (backing == null || backing.length() <= e.offset()) {
                break;
            }
            layer = backing;
            depth++;
        }
        return depth;
    }

    /** Prints one entry as qemu-img does; false (after an error line) when human output cannot show it. */
    private boolean print(PrintWriter out, Entry e, Entry next, boolean json) {
        if (json) {
            out.print(String.format(
                    Locale.ROOT,
                    "{ \"start\": %d, \"length\": %d, \"depth\": %d, \"present\": %b, \"zero\": %b, \"data\": %b",
                    e.start(),
                    e.length(),
                    e.depth(),
                    e.present(),
                    e.zero(),
                    e.data()));
            if (e.hasOffset()) {
                out.print(", \"offset\": " + e.offset());
            }
            out.print('}');
            if (next != null) {
                out.print(",\n");
            }
            return true;
        }
        if (e.data() && !e.hasOffset()) {
            error("File contains external, encrypted or compressed clusters.");
            return false;
        }
        if (e.data() && !e.zero()) {
            out.print(String.format(
                    Locale.ROOT,
                    "%-16s%-16s%-16s%s%n",
                    hex(e.start()),
                    hex(e.length()),
                    hex(e.hasOffset() ? e.offset() : 0),
                    e.file() == null ? "" : e.file()));
        }
        return true;
    }

    /** C's {@code %#x}: "0x" before non-zero values, plain "0" for zero. */
    private static String hex(long v) {
        return v == 0 ? "0" : "0x" + Long.toHexString(v);
    }
}
