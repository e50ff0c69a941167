package dev.strata.daemon;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.DriveOptions;
import dev.strata.block.drivers.Drivers;
import dev.strata.daemon.StartupOptions.SocketSpec;
import dev.strata.job.Job;
import dev.strata.job.JobRegistry;
import dev.strata.nbd.NbdServer;
import dev.strata.qmp.Commands;
import dev.strata.qmp.Qmp;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.QmpListener;
import dev.strata.qmp.commands.BitmapCommands;
import dev.strata.qmp.commands.BlockCommands;
import dev.strata.qmp.commands.BlockdevSchema;
import dev.strata.qmp.commands.ControlCommands;
import dev.strata.qmp.commands.CreateCommands;
import dev.strata.qmp.commands.HmpCommands;
import dev.strata.qmp.commands.JobCommands;
import dev.strata.qmp.commands.JobEvents;
import dev.strata.qmp.commands.JobLauncher;
import dev.strata.qmp.commands.NbdCommands;
import dev.strata.qmp.commands.ResizeCommands;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A running Strata daemon: the node graph, the QMP server that controls it, and the orderly
 * shutdown (every node flushed and closed, sockets and pid file removed) that {@code quit},
 * SIGTERM and SIGINT all end in.
 *
 * <p>Start-up applies qemu-storage-daemon's options in command-line order, like QEMU, under the
 * QMP command lock: a client that connects early (a {@code wait=on} socket) gets its greeting but
 * runs no command before start-up is complete. The pid file is written last, so its presence
 * means "ready".
 */
public final class Daemon implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Daemon.class);

    /** One start-up option, in the order given. */
    public sealed interface StartupOption {}

    /** {@code --blockdev}: a node in the key=value or the JSON form. */
    public record Blockdev(String text) implements StartupOption {}

    /** {@code --drive}: QEMU's -drive, a named drive over a root node. */
    public record DriveOption(String text) implements StartupOption {}

    /** {@code --chardev socket,id=ID,path=PATH,server=on[,wait=on|off]}. */
    public record Chardev(String text) implements StartupOption {}

    /** {@code --monitor [chardev=]ID[,mode=control][,pretty=on|off]}. */
    public record Monitor(String text) implements StartupOption {}

    /** {@code --qmp unix:PATH[,server=on][,wait=on|off]} (QEMU's -qmp shorthand). */
    public record QmpSocket(String text) implements StartupOption {}

    /** {@code --nbd-server addr.type=unix,addr.path=P} or {@code addr.type=inet,addr.host=H,addr.port=P}. */
    public record NbdServerOption(String text) implements StartupOption {}

    /** {@code --export type=nbd,id=ID,node-name=N[,name=NAME][,writable=on|off][,bitmaps.0=B]}. */
    public record ExportOption(String text) implements StartupOption {}

    /** {@code --pidfile PATH}. */
    public record PidFile(String path) implements StartupOption {}

    /** A start-up option that cannot be applied; the message names the option as QEMU does. */
    public static final class StartupException extends Exception {
        private static final long serialVersionUID = 1L;

        StartupException(String message) {
            super(message, null, false, false);
        }
    }

    private final BlockGraph graph;
    private final Qmp qmp;
    private final BlockdevSchema blockdevSchema;
    private final JobRegistry jobs;
    private final NbdServer nbd = new NbdServer();
    private final AtomicBoolean stopping = new AtomicBoolean();
    private final CountDownLatch stopped = new CountDownLatch(1);
    private volatile Path pidFile;

    private Daemon(String version) {
        this.graph = Drivers.newGraph();
        Commands commands = new Commands();
        Qmp.VersionInfo info = versionInfo(version);
        // quit's reply is on its way when this runs; shut down off the session's writer thread
        ControlCommands.register(
                commands, info, () -> Thread.ofPlatform().name("strata-quit").start(this::shutdown));
        BlockCommands.register(commands, graph);
        ResizeCommands.register(commands, graph);
        BitmapCommands.register(commands, graph);
        HmpCommands.register(commands, graph);
        JobEvents events = new JobEvents();
        JobLauncher launcher = new JobLauncher();
        this.jobs = new JobRegistry(events, launcher);
        JobCommands.register(commands, graph, jobs, launcher);
        CreateCommands.register(commands, graph, jobs, launcher);
        NbdCommands.register(commands, graph, nbd, this::emit);
        this.qmp = new Qmp(commands, info);
        events.attach(qmp::emit);
        this.blockdevSchema = new BlockdevSchema(graph::hasDriver);
    }

    /**
     * The version Strata reports: QEMU 7.2.0, the release whose QMP behaviour it matches and is
     * tested against (clients compare this triple to decide what they may send), with Strata's
     * own version in {@code package}.
     */
    public static Qmp.VersionInfo versionInfo(String strataVersion) {
        return new Qmp.VersionInfo(new Qmp.VersionTriple(7, 2, 0), "strata " + strataVersion);
    }

    /** Starts a daemon from its options; on failure everything opened so far is closed again. */
    public static Daemon start(List<StartupOption> options, String version) throws StartupException {
        Daemon d = new Daemon(version);
        try {
            d.qmp.underCommandLock(() -> {
                d.apply(options);
                return null;
            });
        } catch (StartupException e) {
            d.shutdown();
            throw e;
        } catch (Exception e) {
            d.shutdown();
            throw new StartupException(e.getMessage() == null ? e.toString() : e.getMessage());
        }
        return d;
    }

    public BlockGraph graph() {
        return graph;
    }

    public Qmp qmp() {
        return qmp;
    }

    public JobRegistry jobs() {
        return jobs;
    }

    public NbdServer nbd() {
        return nbd;
    }

    private void emit(String event, Object data) {
        qmp.emit(event, data);
    }

    /** The QMP sockets this daemon listens on. */
    public List<Path> sockets() {
        return qmp.listeners().stream().map(QmpListener::path).toList();
    }

    private void apply(List<StartupOption> options) throws StartupException {
        Map<String, SocketSpec> chardevs = new LinkedHashMap<>();
        List<QmpListener> waitFor = new ArrayList<>();
        for (StartupOption o : options) {
            switch (o) {
                case Blockdev(String text) -> addBlockdev(text);
                case DriveOption(String text) -> addDrive(text);
                case Chardev(String text) -> {
                    var parsed = StartupOptions.chardev(text);
                    if (chardevs.putIfAbsent(parsed.getKey(), parsed.getValue()) != null) {
                        throw new StartupException(
                                "--chardev " + text + ": Duplicate ID '" + parsed.getKey() + "' for chardev");
                    }
                }
                case Monitor(String text) -> {
                    StartupOptions.MonitorSpec m = StartupOptions.monitor(text);
                    SocketSpec spec = chardevs.get(m.chardev());
                    if (spec == null) {
                        throw new StartupException("--monitor " + text + ": chardev \"" + m.chardev() + "\" not found");
                    }
                    listen("--monitor " + text, spec, m.pretty(), waitFor);
                }
                case QmpSocket(String text) -> listen("--qmp " + text, StartupOptions.qmpSocket(text), false, waitFor);
                case NbdServerOption(String text) -> DaemonNbd.startServer(nbd, text);
                case ExportOption(String text) -> DaemonNbd.addExport(graph, nbd, text);
                case PidFile(String path) -> this.pidFile = Path.of(path);
            }
        }
        for (QmpListener l : waitFor) {
            try {
                l.awaitFirstClient();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new StartupException("interrupted while waiting for a QMP client");
            }
        }
        if (pidFile != null) {
            writePidFile(pidFile);
        }
    }

    private void listen(String what, SocketSpec spec, boolean pretty, List<QmpListener> waitFor)
            throws StartupException {
        try {
            QmpListener l = qmp.listen(spec.path(), pretty);
            if (spec.waitForClient()) {
                waitFor.add(l);
            }
        } catch (IOException e) {
            throw new StartupException(what + ": Failed to bind socket to " + spec.path() + ": " + e.getMessage());
        }
    }

    private void addBlockdev(String text) throws StartupException {
        try {
            BlockCommands.add(graph, StartupOptions.blockdev(text, blockdevSchema));
        } catch (QmpException e) {
            throw new StartupException("--blockdev " + text + ": " + e.desc());
        }
    }

    private void addDrive(String text) throws StartupException {
        try {
            graph.addDrive(DriveOptions.parse(text, graph));
        } catch (IOException e) {
            throw new StartupException("--drive " + text + ": " + e.getMessage());
        }
    }

    private static void writePidFile(Path path) throws StartupException {
        try {
            Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
            Files.deleteIfExists(tmp);
            Files.createFile(tmp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
            Files.writeString(
                    tmp,
                    ProcessHandle.current().pid() + "\n",
                    StandardCharsets.US_ASCII,
                    StandardOpenOption.TRUNCATE_EXISTING);
            Files.move(
                    tmp,
                    path,
                    java.nio.file.StandardCopyOption.ATOMIC_MOVE,
                    java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new StartupException("cannot create PID file: Could not create '" + path + "': " + reason(e));
        }
    }

    private static String reason(IOException e) {
        if (e instanceof java.nio.file.NoSuchFileException) {
            return "No such file or directory";
        }
        if (e instanceof java.nio.file.AccessDeniedException) {
            return "Permission denied";
        }
        return e.getMessage();
    }

    /**
     * Stops the daemon: no new QMP sessions or commands, then, once any running command is done,
     * every node flushed and closed, then the pid file removed. Safe to call more than once and
     * from any thread; later calls wait for the first to finish.
     */
    public void shutdown() {
        if (!stopping.compareAndSet(false, true)) {
            awaitShutdown();
            return;
        }
        try {
            // running jobs are cancelled while clients still listen, so they see how each ended
            // (BLOCK_JOB_CANCELLED), as QEMU's clients do when it quits
            cancelJobs();
            qmp.close();
            // clients go before the nodes they write to close
            nbd.close();
            try {
                qmp.underCommandLock(() -> {
                    closeNodes();
                    return null;
                });
            } catch (Exception e) {
                LOG.warn("closing nodes failed: {}", e.toString());
            }
            Path pid = pidFile;
            if (pid != null) {
                try {
                    Files.deleteIfExists(pid);
                } catch (IOException e) {
                    LOG.warn("removing pid file {}: {}", pid, e.toString());
                }
            }
        } finally {
            stopped.countDown();
        }
    }

    private void cancelJobs() {
        for (Job j : jobs.jobs()) {
            try {
                jobs.cancelSync(j);
            } catch (RuntimeException e) {
                LOG.warn("cancelling job '{}' failed: {}", j.id(), e.toString());
            }
        }
    }

    private void closeNodes() {
        // jobs first (one a last command may have started): each gives its nodes back
        // (drive-backup closes its target) before the nodes close
        cancelJobs();
        for (BlockNode n : graph.nodes()) {
            if (!n.readOnly() && !n.isClosed()) {
                try {
                    n.flush();
                } catch (IOException e) {
                    LOG.warn("flushing node '{}' failed: {}", n.nodeName(), e.getMessage());
                }
            }
        }
        try {
            graph.close();
        } catch (IOException e) {
            LOG.warn("closing nodes failed: {}", e.getMessage());
        }
    }

    /** Waits until {@link #shutdown} has finished. */
    public void awaitShutdown() {
        boolean interrupted = false;
        while (true) {
            try {
                stopped.await();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void close() {
        shutdown();
    }
}
