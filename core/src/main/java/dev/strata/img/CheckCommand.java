package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.block.qcow2.Qcow2Check;
import dev.strata.block.qcow2.Qcow2CheckResult;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img check}: qemu-img check's consistency check of a qcow2 image, with its exit
 * codes: 0 clean, 2 corruptions, 3 leaks only, 1 the check itself failed, 63 the format has no
 * checks (raw). Like every {@code strata img} command it opens the image through the block layer,
 * with QEMU's image lock: a check refuses an image another process writes (unless {@code -U}), a
 * repair refuses any image in use. The check and its report are {@link Qcow2Check}'s; this command
 * picks the format, prints the report in the chosen output format and passes the exit code on.
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

    @Option(names = "-T", paramLabel = "SRC_CACHE", hidden = true, description = "accepted, ignored")
    String cache;

    @Parameters(index = "0", paramLabel = "FILE")
    String filename;

    @Override
    int execute() throws Exception {
        boolean json = OutputFormat.parse(output);
        Qcow2Check.RepairMode mode = repair == null ? Qcow2Check.RepairMode.NONE : Qcow2Check.RepairMode.parse(repair);
        if (mode != Qcow2Check.RepairMode.NONE && forceShare) {
            throw new ImgFailure("--force-share/-U is not allowed when repairing");
        }
        String fmt = format;
        Qcow2CheckResult result;
        try (BlockGraph graph = Drivers.newGraph()) {
            if (fmt == null) {
                try {
                    fmt = graph.probe(filename);
                } catch (java.io.IOException e) {
                    throw new ImgFailure("Could not open '" + filename + "': " + e.getMessage());
                }
            }
            if (!fmt.equals("qcow2")) {
                // qemu-img opens the image before it finds the format has no check
                try (BlockNode node =
                        Images.open(graph, filename, fmt, new OpenFlags(true, forceShare), false, err())) {
                    throw new ImgFailure(NOT_SUPPORTED, "This image format does not support checks");
                }
            }
            // the check reads (and a repair writes) through the image's file node, which holds the
            // image lock a qcow2 node would: a repair needs the image to itself
            OpenFlags flags =
                    mode == Qcow2Check.RepairMode.NONE ? new OpenFlags(true, forceShare) : OpenFlags.READ_WRITE;
            try (BlockNode file = Images.openFile(graph, filename, flags)) {
                result = Qcow2Check.run(file.driver(), filename, mode, Qcow2Check.defaultMemoryBudget());
            }
        }
        if (!quiet && result.completed()) {
            if (json) {
                out().println(QemuJson.pretty(result.toJsonMap()));
            } else {
                out().print(result.toHumanText());
            }
        } else if (!quiet && !json) {
            out().print(result.toHumanText());
        }
        out().flush();
        for (String line : result.diagnostics("strata img")) {
            err().println(line);
        }
        return result.exitCode();
    }
}
