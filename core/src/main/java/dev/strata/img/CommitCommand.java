package dev.strata.img;

import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata img commit}: writes an overlay's data into its backing file (qemu-img commit). */
@Command(name = "commit", mixinStandardHelpOptions = true, description = "Commit an image into its backing file.")
final class CommitCommand extends ImgSubcommand {
    @Option(names = "-f", paramLabel = "FMT", description = "image format (probed when absent)")
    String format;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "FILE")
    String filename;

    @Override
    int execute() throws Exception {
        throw new ImgFailure("commit is not available yet");
    }
}
