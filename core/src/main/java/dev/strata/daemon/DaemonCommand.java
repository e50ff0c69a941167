package dev.strata.daemon;

import dev.strata.Main;
import java.util.ArrayList;
import java.util.List;
import java.util.Stack;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import sun.misc.Signal;

/**
 * {@code strata daemon}: qemu-storage-daemon's command line. Options are applied in the order
 * given (a {@code --monitor} must follow its {@code --chardev}, as in QEMU), which is why every
 * option goes through {@link InOrder} into one list.
 *
 * <p>SIGTERM and SIGINT end the daemon as {@code quit} does, with exit status 0 (as
 * qemu-storage-daemon); the JVM's own shutdown hook covers any other way the process is asked to
 * stop.
 */
@Command(
        name = "daemon",
        mixinStandardHelpOptions = true,
        sortOptions = false,
        description = {
            "Run Strata as a storage daemon controlled over QMP (qemu-storage-daemon compatible).",
            "",
            "Options are applied in the order given. Examples:",
            "  strata daemon --blockdev driver=file,node-name=file0,filename=disk.raw \\",
            "      --blockdev driver=raw,node-name=drive0,file=file0 \\",
            "      --chardev socket,id=qmp0,path=/tmp/qmp.sock,server=on,wait=off --monitor chardev=qmp0",
            "  strata daemon --blockdev '{\"driver\":\"qcow2\",\"node-name\":\"drive0\",\"file\":{\"driver\":\"file\","
                    + "\"filename\":\"disk.qcow2\"}}' --qmp unix:/tmp/qmp.sock,server=on,wait=off",
            ""
        })
public final class DaemonCommand implements Callable<Integer> {
    private final List<Daemon.StartupOption> options = new ArrayList<>();

    /**
     * Takes each occurrence of an option as it is parsed, so repeated options and their order
     * across different options survive (picocli would otherwise keep one value per option).
     */
    static final class InOrder implements CommandLine.IParameterConsumer {
        @Override
        public void consumeParameters(
                Stack<String> args, CommandLine.Model.ArgSpec arg, CommandLine.Model.CommandSpec command) {
            if (args.isEmpty()) {
                throw new CommandLine.ParameterException(
                        command.commandLine(),
                        "option '" + ((CommandLine.Model.OptionSpec) arg).longestName() + "' requires an argument");
            }
            String value = args.pop();
            DaemonCommand self = (DaemonCommand) command.userObject();
            String name = ((CommandLine.Model.OptionSpec) arg).longestName();
            self.options.add(
                    switch (name) {
                        case "--blockdev" -> new Daemon.Blockdev(value);
                        case "--drive" -> new Daemon.DriveOption(value);
                        case "--chardev" -> new Daemon.Chardev(value);
                        case "--monitor" -> new Daemon.Monitor(value);
                        case "--qmp" -> new Daemon.QmpSocket(value);
                        case "--nbd-server" -> new Daemon.NbdServerOption(value);
                        case "--export" -> new Daemon.ExportOption(value);
                        case "--pidfile" -> new Daemon.PidFile(value);
                        default -> throw new IllegalStateException(name);
                    });
        }
    }

    @Option(
            names = "--blockdev",
            parameterConsumer = InOrder.class,
            paramLabel = "OPTIONS",
            description = "[driver=]<driver>[,node-name=<N>][,discard=ignore|unmap][,cache.direct=on|off]"
                    + "[,cache.no-flush=on|off][,read-only=on|off][,auto-read-only=on|off][,force-share=on|off]"
                    + "[,detect-zeroes=on|off|unmap][,driver specific parameters...], or the same as a JSON"
                    + " object: configure a block node")
    List<String> blockdev;

    @Option(
            names = "--drive",
            parameterConsumer = InOrder.class,
            paramLabel = "OPTIONS",
            description = "[id=<id>,]file=<path>[,format=qcow2|raw][,node-name=<N>][,cache=writeback|none|"
                    + "writethrough|directsync|unsafe][,aio=threads|native|io_uring][,discard=ignore|unmap]"
                    + "[,readonly=on|off][,if=none|...]: a drive, as QEMU's -drive (device-model keys such as"
                    + " if, bus and unit are accepted and ignored); its id works wherever a device is named")
    List<String> drive;

    @Option(
            names = "--chardev",
            parameterConsumer = InOrder.class,
            paramLabel = "OPTIONS",
            description = "socket,id=<id>,path=<path>,server=on[,wait=on|off]: a UNIX socket for a --monitor"
                    + " (wait=on, the default, holds start-up until a client connects)")
    List<String> chardev;

    @Option(
            names = "--monitor",
            parameterConsumer = InOrder.class,
            paramLabel = "OPTIONS",
            description = "[chardev=]<id>[,mode=control][,pretty=on|off]: serve QMP on that chardev")
    List<String> monitor;

    @Option(
            names = "--qmp",
            parameterConsumer = InOrder.class,
            paramLabel = "unix:PATH",
            description = "unix:<path>,server=on[,wait=on|off]: serve QMP on a UNIX socket (QEMU's -qmp)")
    List<String> qmp;

    @Option(
            names = "--nbd-server",
            parameterConsumer = InOrder.class,
            paramLabel = "OPTIONS",
            description = "addr.type=unix,addr.path=<path> | addr.type=inet,addr.host=<host>,addr.port=<port>"
                    + "[,max-connections=<n>]: start the NBD server")
    List<String> nbdServer;

    @Option(
            names = "--export",
            parameterConsumer = InOrder.class,
            paramLabel = "OPTIONS",
            description = "[type=]nbd,id=<id>,node-name=<node>[,name=<name>][,description=<text>][,writable=on|off]"
                    + "[,bitmaps.0=<bitmap>...|,bitmap=<bitmap>][,allocation-depth=on|off]: export a node over NBD")
    List<String> export;

    @Option(
            names = "--pidfile",
            parameterConsumer = InOrder.class,
            paramLabel = "PATH",
            description = "write the process ID to a file after start-up")
    List<String> pidfile;

    @Override
    public Integer call() throws Daemon.StartupException {
        // signals are handled from the start: one that arrives while nodes open stops the daemon
        // as soon as it is up (the pid file is the first sign of life a supervisor sees)
        AtomicReference<Daemon> running = new AtomicReference<>();
        AtomicBoolean stopRequested = new AtomicBoolean();
        Runnable stop = () -> {
            stopRequested.set(true);
            Daemon d = running.get();
            if (d != null) {
                d.shutdown();
            }
        };
        for (String sig : new String[] {"TERM", "INT"}) {
            Signal.handle(new Signal(sig), s -> Thread.ofPlatform().start(stop));
        }
        Runtime.getRuntime().addShutdownHook(new Thread(stop, "strata-shutdown"));
        Daemon daemon = Daemon.start(options, Main.version());
        running.set(daemon);
        if (stopRequested.get()) {
            daemon.shutdown();
        }
        daemon.awaitShutdown();
        return 0;
    }
}
