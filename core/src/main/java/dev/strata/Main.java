package dev.strata;

import dev.strata.block.file.FileDriver;
import dev.strata.daemon.DaemonCommand;
import dev.strata.demo.DemoCommand;
import dev.strata.img.ImgCommand;
import java.io.IOException;
import java.io.InputStream;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Properties;
import java.util.function.Supplier;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code strata} command line: {@code img} (qemu-img's work), {@code daemon} and {@code demo}. */
@Command(
        name = "strata",
        mixinStandardHelpOptions = true,
        versionProvider = Main.Version.class,
        description = "Block-storage daemon with dirty bitmaps and incremental backup.")
public final class Main implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        if (args.length > 0 && (args[0].equals("img") || args[0].equals("daemon"))) {
            // binding the native calls an open makes takes tens of ms; done beside the command
            // line's parsing, the first file open finds them ready
            Thread.ofPlatform().daemon().name("native-calls").start(FileDriver::bindNativeCalls);
        }
        System.exit(run(args));
    }

    /** Runs the CLI and returns its exit code (used by tests that run commands in-process). */
    public static int run(String... args) {
        return run(null, null, args);
    }

    /**
     * Runs the CLI with its output and error text going to the given writers (null: the process's
     * own), so tests can run commands in-process and read what a user would see.
     */
    public static int run(java.io.PrintWriter out, java.io.PrintWriter err, String... args) {
        CommandLine cl = new CommandLine(new Main());
        Map<String, Supplier<Object>> subcommands = new LinkedHashMap<>();
        subcommands.put("img", () -> ImgCommand.commandLine(args));
        subcommands.put("daemon", DaemonCommand::new);
        subcommands.put("demo", DemoCommand::new);
        subcommands.put("aot-train", AotTrainCommand::new);
        subcommands.put("help", CommandLine.HelpCommand::new);
        LazySubcommands.add(cl, subcommands, args, 0);
        if (out != null) {
            cl.setOut(out);
        }
        if (err != null) {
            cl.setErr(err);
        }
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            String msg = ex.getMessage() == null ? ex.toString() : ex.getMessage();
            cmd.getErr()
                    .println(
                            cmd.getCommandName().equals("strata")
                                    ? "strata: " + msg
                                    : "strata " + cmd.getCommandName() + ": " + msg);
            return 1;
        });
        return cl.execute(args);
    }

    /** Reads the version Maven wrote into the jar. */
    public static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() throws IOException {
            return new String[] {"strata " + version(), "Java " + Runtime.version()};
        }
    }

    public static String version() {
        Properties p = new Properties();
        try (InputStream in = Main.class.getResourceAsStream("/strata-version.properties")) {
            if (in != null) {
                p.load(in);
            }
        } catch (IOException e) {
            return "unknown";
        }
        return p.getProperty("version", "unknown");
    }
}
