package dev.strata.demo;

import dev.strata.block.BlockGraph;
import dev.strata.block.drivers.Drivers;
import dev.strata.block.qcow2.Qcow2Create;
import dev.strata.daemon.Daemon;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * The daemon's part of the JVM's ahead-of-time training run ({@code strata aot-train}): a daemon
 * on a qcow2 image, and a QMP client (the demo's, with nothing shown) that adds a bitmap, writes as
 * a guest, queries, takes a full backup and a series of small incremental ones, stores and loads a
 * persistent bitmap a few times, and quits, so that
 * {@code ./strata daemon} starts with these classes already loaded and linked and with the JIT's
 * profiles of them. A step that fails fails the run.
 */
public final class DaemonTraining {
    private DaemonTraining() {}

    /** Incremental backups in the training run: enough for the JIT's profiles of the copy path. */
    private static final int BACKUPS = 24;

    /** Clusters each of them copies, scattered over the disk as a guest's writes are. */
    private static final int DIRTY_CLUSTERS = 48;

    /** The training image's 64 KiB clusters (16 MiB, as aot-train makes it). */
    private static final int TRAINING_CLUSTERS = 256;

    private static final long JOB_TIMEOUT_MS = 60_000;

    /** Store-and-load rounds of a persistent bitmap in the training run. */
    private static final int PERSISTENT_CYCLES = 16;

    public static void run(Path dir, String qcow2Image) throws Exception {
        Path socket = dir.resolve("qmp.sock");
        List<Daemon.StartupOption> options = List.of(
                new Daemon.Blockdev("{\"driver\":\"qcow2\",\"node-name\":\"drive0\",\"file\":{\"driver\":\"file\","
                        + "\"filename\":\"" + qcow2Image + "\"}}"),
                new Daemon.QmpSocket("unix:" + socket + ",server=on,wait=off"));
        try (Daemon daemon = Daemon.start(options, "training");
                DemoQmp q = DemoQmp.connect(socket, new PrintStream(OutputStream.nullOutputStream()))) {
            q.quiet(true);
            q.ok("block-dirty-bitmap-add", Map.of("node", "drive0", "name", "b"));
            guestWrite(q, 0);
            q.ok("query-block", null);
            q.ok("query-named-block-nodes", null);
            q.ok("x-debug-block-dirty-bitmap-sha256", Map.of("node", "drive0", "name", "b"));
            backups(dir, q);
            persistentBitmaps(dir, q);
            q.ok("quit", null);
        }
    }

    /**
     * A full backup, then incremental ones of a few scattered clusters each: the code a running
     * daemon repeats most, so that the cache's profiles let the JIT compile it from the first
     * backups on (JEP 515) rather than after a few dozen.
     */
    private static void backups(Path dir, DemoQmp q) throws IOException, InterruptedException {
        backup(q, "full", dir.resolve("full.qcow2"), Map.of("sync", "full"));
        Random random = new Random(1);
        for (int i = 0; i < BACKUPS; i++) {
            q.ok("block-dirty-bitmap-add", Map.of("node", "drive0", "name", "i"));
            for (int c = 0; c < DIRTY_CLUSTERS; c++) {
                guestWrite(q, (long) random.nextInt(TRAINING_CLUSTERS) << 16);
            }
            backup(q, "inc" + i, dir.resolve("inc.qcow2"), Map.of("sync", "incremental", "bitmap", "i"));
            q.ok("block-dirty-bitmap-remove", Map.of("node", "drive0", "name", "i"));
        }
    }

    /**
     * A node with a persistent bitmap deleted and added again, each time storing the bitmap and
     * loading it: a fresh daemon's first blockdev-add of such an image would otherwise run that
     * code interpreted (several times QEMU's time).
     */
    private static void persistentBitmaps(Path dir, DemoQmp q) throws IOException {
        Path image = dir.resolve("persistent.qcow2");
        try (BlockGraph graph = Drivers.newGraph()) {
            Qcow2Create.create(graph, image.toString(), Qcow2Create.Options.of((long) TRAINING_CLUSTERS << 16));
        }
        Map<String, Object> node = Map.of(
                "driver", "qcow2", "node-name", "p", "file", Map.of("driver", "file", "filename", image.toString()));
        q.ok("blockdev-add", node);
        q.ok("block-dirty-bitmap-add", Map.of("node", "p", "name", "pb", "persistent", true));
        for (int i = 0; i < PERSISTENT_CYCLES; i++) {
            q.ok("human-monitor-command", Map.of("command-line", "qemu-io p \"write " + (i << 16) + " 4k\""));
            q.ok("blockdev-del", Map.of("node-name", "p"));
            q.ok("blockdev-add", node);
        }
        q.ok("blockdev-del", Map.of("node-name", "p"));
    }

    private static void guestWrite(DemoQmp q, long offset) throws IOException {
        q.ok("human-monitor-command", Map.of("command-line", "qemu-io drive0 \"write -P 0xab " + offset + " 64k\""));
    }

    private static void backup(DemoQmp q, String job, Path target, Map<String, Object> sync)
            throws IOException, InterruptedException {
        Files.deleteIfExists(target);
        Map<String, Object> args = new LinkedHashMap<>(sync);
        args.put("job-id", job);
        args.put("device", "drive0");
        args.put("format", "qcow2");
        args.put("target", target.toString());
        q.ok("drive-backup", args);
        // the client keeps the events that arrive before the command's answer
        Map<String, Object> end = q.awaitEvent(e -> DemoJobs.isFinal(e, job), JOB_TIMEOUT_MS);
        if (!DemoJobs.Outcome.of(job, end, 0).succeeded()) {
            throw new IOException("training backup " + job + " did not complete: " + end);
        }
    }
}
