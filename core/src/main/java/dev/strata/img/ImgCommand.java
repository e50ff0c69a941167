package dev.strata.img;

import dev.strata.LazySubcommands;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Supplier;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code strata img}: qemu-img's image commands, flag-compatible where they overlap. */
@Command(
        name = "img",
        mixinStandardHelpOptions = true,
        description =
                "Create, inspect, check, compare, convert and resize disk images and change their bitmaps (qemu-img compatible).")
public final class ImgCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** {@code strata img} with the subcommand {@code args[1]} names (all of them for help or a bad name). */
    public static CommandLine commandLine(String[] args) {
        CommandLine img = new CommandLine(new ImgCommand());
        Map<String, Supplier<Object>> table = new LinkedHashMap<>();
        table.put("create", CreateCommand::new);
        table.put("info", InfoCommand::new);
        table.put("check", CheckCommand::new);
        table.put("compare", CompareCommand::new);
        table.put("convert", ConvertCommand::new);
        table.put("map", MapCommand::new);
        table.put("rebase", RebaseCommand::new);
        table.put("commit", CommitCommand::new);
        table.put("resize", ResizeCommand::new);
        table.put("bitmap", BitmapCommand::new);
        table.put("bench", BenchCommand::new);
        LazySubcommands.add(img, table, args, 1);
        CommandLine resize = img.getSubcommands().get("resize");
        if (resize != null) {
            // qemu-img takes the last argument as the size before it reads options: "-1G" is a size
            resize.setUnmatchedOptionsArePositionalParams(true);
        }
        CommandLine bitmap = img.getSubcommands().get("bitmap");
        if (bitmap != null) {
            // qemu-img takes --add, --merge SOURCE ... as often as given, in order
            bitmap.setOverwrittenOptionsAllowed(true);
        }
        return img;
    }

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }
}
