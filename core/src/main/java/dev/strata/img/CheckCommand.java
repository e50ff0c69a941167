package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img check}: qemu-img check's consistency check of a qcow2 image, with its exit
 * codes: 0 clean, 2 corruptions, 3 leaks only, 1 the check itself failed, 63 the format has no
 * checks (raw).
 */
@Command(name = "check", mixinStandardHelpOptions = true, description = "Check an image for consistency.")
final class CheckCommand extends ImgSubcommand {
    /** qemu-img check's exit code for formats without a check. */
    static final int NOT_SUPPORTED = 63;

    @Option(names = "-f", paramLabel = "FMT", description = "image format (probed when absent)")
    String format;

    @Option(names = "--output", paramLabel = "human|json", description = "output format (default: human)")
    String output = "human";

    @Option(names = "-r", paramLabel = "leaks|all", description = "repair leaks only, or all errors")
    String repair;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Option(
            names = {"-U", "--force-share"},
            description = "open the image in shared mode")
    boolean forceShare;

    @Parameters(index = "0", paramLabel = "FILE")
    String filename;

    @Override
    int execute() throws Exception {
        boolean json = OutputFormat.parse(output);
        if (repair != null && !repair.equals("leaks") && !repair.equals("all")) {
            throw new ImgFailure("Unknown option value for -r (expecting 'leaks' or 'all'): " + repair);
        }
        if (repair != null && forceShare) {
            throw new ImgFailure("--force-share/-U is not allowed when repairing");
        }
        String fmt;
        try (BlockGraph graph = Drivers.newGraph()) {
            // the format decides whether there is a check at all; qemu-img opens the image first
            try (BlockNode node = Images.open(graph, filename, format, new OpenFlags(true, forceShare), false, err())) {
                fmt = node.driverName();
            }
        }
        if (!fmt.equals("qcow2")) {
            throw new ImgFailure(NOT_SUPPORTED, "This image format does not support checks");
        }
        throw new ImgFailure("qcow2 checks are not available yet");
    }
}
