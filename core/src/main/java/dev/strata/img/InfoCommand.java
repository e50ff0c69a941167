package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img info}: qemu-img info's report of an image, or of its whole backing chain with
 * {@code --backing-chain} (human: blocks separated by a blank line; JSON: a list).
 *
 * <p>Each image is opened on its own without its backing file, as qemu-img does, and the chain is
 * followed through the names stored in the images; a name seen twice ends the walk with qemu-img's
 * "creates an infinite loop" error rather than looping.
 */
@Command(name = "info", mixinStandardHelpOptions = true, description = "Display information about an image.")
final class InfoCommand extends ImgSubcommand {
    @Option(names = "-f", paramLabel = "FMT", description = "image format (probed when absent)")
    String format;

    @Option(names = "--output", paramLabel = "human|json", description = "output format (default: human)")
    String output = "human";

    @Option(names = "--backing-chain", description = "show every image of the backing chain")
    boolean backingChain;

    @Option(
            names = {"-U", "--force-share"},
            description = "open the image in shared mode")
    boolean forceShare;

    @Parameters(index = "0", paramLabel = "FILE")
    String filename;

    @Override
    int execute() throws Exception {
        boolean json = OutputFormat.parse(output);
        List<ImageInfo> chain = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        String name = filename;
        String fmt = format;
        try (BlockGraph graph = Drivers.newGraph()) {
            while (name != null) {
                if (!seen.add(name)) {
                    throw new ImgFailure("Backing file '" + name + "' creates an infinite loop.");
                }
                if (chain.size() >= 1024) {
                    throw new ImgFailure("Backing chain of '" + filename + "' is longer than 1024 images");
                }
                ImageInfo info;
                try (BlockNode node =
                        Images.open(graph, name, fmt, new OpenFlags(true, forceShare).withNoIo(), false, err())) {
                    info = ImageInfo.of(node, FormatFacts.of(node));
                }
                chain.add(info);
                name = backingChain ? info.fullBackingFilename() : null;
                fmt = backingChain ? info.backingFormat() : null;
            }
        }
        if (json) {
            Object value = backingChain
                    ? chain.stream().map(ImageInfo::fields).toList()
                    : chain.getFirst().fields();
            out().println(QemuJson.pretty(value));
        } else {
            for (int i = 0; i < chain.size(); i++) {
                if (i > 0) {
                    out().print('\n');
                }
                out().print(chain.get(i).human());
            }
        }
        return 0;
    }
}
