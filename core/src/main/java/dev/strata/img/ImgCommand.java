package dev.strata.img;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code strata img}: qemu-img's image commands, flag-compatible where they overlap. */
@Command(
        name = "img",
        mixinStandardHelpOptions = true,
        description = "Create, inspect, check, compare and convert disk images (qemu-img compatible).",
        subcommands = {
            CreateCommand.class,
            InfoCommand.class,
            CheckCommand.class,
            CompareCommand.class,
            ConvertCommand.class,
            MapCommand.class,
            RebaseCommand.class,
            CommitCommand.class,
            BenchCommand.class
        })
public final class ImgCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }
}
