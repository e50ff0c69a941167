package dev.strata.img;

import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code strata img rebase}: changes the backing file of an image (qemu-img rebase). */
@Command(name = "rebase", mixinStandardHelpOptions = true, description = "Change the backing file of an image.")
final class RebaseCommand extends ImgSubcommand {
    @Option(names = "-f", paramLabel = "FMT", description = "image format (probed when absent)")
    String format;

    @Option(names = "-b", paramLabel = "BACKING_FILE", description = "new backing file (\"\" for none)")
    String backingFile;

    @Option(names = "-F", paramLabel = "BACKING_FMT", description = "format of the new backing file")
    String backingFormat;

    @Option(names = "-u", description = "unsafe: only change the name in the header")
    boolean unsafe;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Parameters(index = "0", paramLabel = "FILE")
    String filename;

    @Override
    int execute() throws Exception {
        throw new ImgFailure("rebase is not available yet");
    }
}
