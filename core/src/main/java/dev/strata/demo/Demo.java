package dev.strata.demo;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.block.qcow2.Qcow2Create;
import dev.strata.daemon.Daemon;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * The seed's story ("Dirty Bitmaps and Incremental Backup") run against a real Strata daemon on
 * scratch images: a full backup in a transaction with a new bitmap, guest writes, two incremental
 * backups, a backup whose target runs out of space and its retry, and two drives in a grouped
 * transaction where one fails. Every backup is compared with the disk as it was when the backup
 * started; the story fails (exit code 1) if any check does not hold.
 */
final class Demo {
    static final long DISK_SIZE = 1L << 30;
    private static final long MIB = 1 << 20;

    private final Path dir;
    private final PrintStream out;
    private final ImageTool tool = ImageTool.find();
    private final Random random = new Random(20171127);
    private final List<Row> rows = new ArrayList<>();
    private DemoQmp qmp;
    private DemoJobs jobs;
    private int snapshots;
    private long lastWritesBytes;
    private boolean allHeld = true;

    /** One line of the final table. */
    record Row(String image, long size, long millis, double mbPerSecond, String verified) {}

    Demo(Path dir, PrintStream out) {
        this.dir = dir;
        this.out = out;
    }

    /** Runs the story; true when every check held. */
    boolean run(String version) throws Exception {
        Path disk0 = dir.resolve("drive0.qcow2");
        Path disk1 = dir.resolve("drive1.qcow2");
        step("Two 1 GiB qcow2 disks with data (checked with " + tool.name() + ")");
        try (BlockGraph graph = Drivers.newGraph()) {
            for (Path disk : List.of(disk0, disk1)) {
                Qcow2Create.create(graph, disk.toString(), Qcow2Create.Options.of(DISK_SIZE));
                fill(disk);
            }
        }
        Path socket = dir.resolve("qmp.sock");
        List<Daemon.StartupOption> options = List.of(
                new Daemon.Blockdev(blockdev("drive0", disk0)),
                new Daemon.Blockdev(blockdev("drive1", disk1)),
                new Daemon.QmpSocket("unix:" + socket + ",server=on,wait=off"));
        try (Daemon daemon = Daemon.start(options, version);
                DemoQmp q = DemoQmp.connect(socket, out)) {
            this.qmp = q;
            this.jobs = new DemoJobs(q, out);
            story(disk0, disk1);
            q.ok("quit", null);
        }
        table();
        return allHeld;
    }

    private void story(Path disk0, Path disk1) throws Exception {
        Path full0 = dir.resolve("full_backup.img");
        Path full1 = dir.resolve("drive1_full.img");
        step(
                "Transaction: new bitmaps and full backups, one point in time (seed: \"Example: New Incremental Backup\")");
        Map<String, Object> txn = obj(
                "actions",
                List.of(
                        action("block-dirty-bitmap-add", obj("node", "drive0", "name", "bitmap0")),
                        action("block-dirty-bitmap-add", obj("node", "drive1", "name", "bitmap0")),
                        action("drive-backup", fullBackup("drive0", full0)),
                        action("drive-backup", fullBackup("drive1", full1))));
        backup("transaction", txn, Map.of("drive0", new Target(disk0, full0), "drive1", new Target(disk1, full1)));

        Path inc0 = dir.resolve("incremental.0.img");
        step("Guest writes, then incremental.0 (seed: \"Example: First Incremental Backup\")");
        guestWrites("drive0", 16);
        tool.ok("create", "-q", "-f", "qcow2", inc0.toString(), "-b", full0.toString(), "-F", "qcow2");
        backup("drive-backup", incremental("drive0", inc0), Map.of("drive0", new Target(disk0, inc0)));

        Path inc1 = dir.resolve("incremental.1.img");
        step("More guest writes, then incremental.1 (seed: \"Example: Second Incremental Backup\")");
        guestWrites("drive0", 16);
        tool.ok("create", "-q", "-f", "qcow2", inc1.toString(), "-b", inc0.toString(), "-F", "qcow2");
        backup("drive-backup", incremental("drive0", inc1), Map.of("drive0", new Target(disk0, inc1)));

        step("A target that runs out of space (seed: \"Example: Individual Failures\")");
        guestWrites("drive0", 8);
        Path inc2 = dir.resolve("incremental.2.img");
        tool.ok("create", "-q", "-f", "qcow2", inc2.toString(), "-b", inc1.toString(), "-F", "qcow2");
        long before = bitmapCount("drive0");
        qmp.ok("blockdev-add", failingTarget("target0", inc2));
        failedBackup(
                "blockdev-backup",
                obj("device", "drive0", "target", "target0", "sync", "incremental", "bitmap", "bitmap0"),
                List.of("drive0"));
        check(bitmapCount("drive0") == before, "bitmap0 still counts " + before + " bytes after the failure");
        qmp.ok("blockdev-del", obj("node-name", "target0"));
        step("Delete and recreate the target, then retry");
        Files.delete(inc2);
        tool.ok("create", "-q", "-f", "qcow2", inc2.toString(), "-b", inc1.toString(), "-F", "qcow2");
        backup("drive-backup", incremental("drive0", inc2), Map.of("drive0", new Target(disk0, inc2)));
        long since = lastWritesBytes;
        long now = bitmapCount("drive0");
        check(
                now > 0 && now <= since,
                "after the successful retry bitmap0 holds only the writes made since it started (" + now + " <= "
                        + since + " bytes)");

        step("Two drives, completion-mode grouped, one target fails (seed: \"Grouped Completion Mode\")");
        guestWrites("drive0", 8);
        guestWrites("drive1", 8);
        Path inc3 = dir.resolve("incremental.3.img");
        Path d1inc0 = dir.resolve("drive1_incremental.0.img");
        tool.ok("create", "-q", "-f", "qcow2", inc3.toString(), "-b", inc2.toString(), "-F", "qcow2");
        tool.ok("create", "-q", "-f", "qcow2", d1inc0.toString(), "-b", full1.toString(), "-F", "qcow2");
        long count0 = bitmapCount("drive0");
        long count1 = bitmapCount("drive1");
        qmp.ok("blockdev-add", failingTarget("target1", d1inc0));
        Map<String, Object> grouped = obj(
                "actions",
                List.of(
                        action("drive-backup", incremental("drive0", inc3)),
                        action(
                                "blockdev-backup",
                                obj(
                                        "device",
                                        "drive1",
                                        "target",
                                        "target1",
                                        "sync",
                                        "incremental",
                                        "bitmap",
                                        "bitmap0"))),
                "properties",
                obj("completion-mode", "grouped"));
        Map<String, DemoJobs.Outcome> ends = failedBackup("transaction", grouped, List.of("drive0", "drive1"));
        check(ends.get("drive0").event().equals("BLOCK_JOB_CANCELLED"), "drive0's job was cancelled with its group");
        check(bitmapCount("drive0") == count0, "drive0's bitmap0 restored (" + count0 + " bytes)");
        check(bitmapCount("drive1") == count1, "drive1's bitmap0 restored (" + count1 + " bytes)");
        qmp.ok("blockdev-del", obj("node-name", "target1"));

        step("Recreate both targets and run the grouped transaction again");
        for (Path p : List.of(inc3, d1inc0)) {
            Files.delete(p);
        }
        tool.ok("create", "-q", "-f", "qcow2", inc3.toString(), "-b", inc2.toString(), "-F", "qcow2");
        tool.ok("create", "-q", "-f", "qcow2", d1inc0.toString(), "-b", full1.toString(), "-F", "qcow2");
        Map<String, Object> retry = obj(
                "actions",
                List.of(
                        action("drive-backup", incremental("drive0", inc3)),
                        action("drive-backup", incremental("drive1", d1inc0))),
                "properties",
                obj("completion-mode", "grouped"));
        backup("transaction", retry, Map.of("drive0", new Target(disk0, inc3), "drive1", new Target(disk1, d1inc0)));
    }

    /** A backup's source disk and target image. */
    private record Target(Path disk, Path image) {}

    /**
     * Starts backups with one command, snapshots each source as it was at that moment, writes as
     * the guest while they run, waits for them and compares every target with its snapshot.
     */
    private void backup(String command, Map<String, Object> args, Map<String, Target> targets) throws Exception {
        qmp.forgetEvents();
        long started = System.nanoTime();
        qmp.ok(command, args);
        Map<String, Path> snaps = new LinkedHashMap<>();
        for (var e : new java.util.TreeMap<>(targets).entrySet()) {
            snaps.put(e.getKey(), snapshot(e.getValue().disk()));
        }
        for (String drive : new java.util.TreeSet<>(targets.keySet())) {
            guestWrites(drive, 2); // during or after the job: the backup must not see them
        }
        Map<String, DemoJobs.Outcome> ends =
                jobs.await(List.copyOf(new java.util.TreeSet<>(targets.keySet())), started);
        for (var e : new java.util.TreeMap<>(targets).entrySet()) {
            DemoJobs.Outcome o = ends.get(e.getKey());
            check(o.succeeded(), e.getKey() + "'s backup completed" + (o.error() == null ? "" : ": " + o.error()));
            Path image = e.getValue().image();
            ImageTool.Result cmp = tool.run(
                    "compare", "-f", "raw", "-F", "qcow2", snaps.get(e.getKey()).toString(), image.toString());
            boolean same = cmp.exitCode() == 0;
            check(
                    same,
                    image.getFileName() + " equals " + e.getKey() + " at the backup's start (" + tool.name()
                            + " compare: " + cmp.output() + ")");
            rows.add(new Row(
                    image.getFileName().toString(),
                    Files.size(image),
                    o.millis(),
                    o.mbPerSecond(),
                    same ? "yes" : "NO"));
            Files.delete(snaps.get(e.getKey()));
        }
    }

    /** Starts backups that are meant to fail; returns how each ended. */
    private Map<String, DemoJobs.Outcome> failedBackup(String command, Map<String, Object> args, List<String> drives)
            throws Exception {
        qmp.forgetEvents();
        long started = System.nanoTime();
        qmp.ok(command, args);
        Map<String, DemoJobs.Outcome> ends = jobs.await(drives, started);
        boolean anyFailed = ends.values().stream().anyMatch(o -> o.error() != null);
        check(anyFailed, "the job reported an error (BLOCK_JOB_COMPLETED with \"error\")");
        check(
                ends.values().stream().noneMatch(DemoJobs.Outcome::succeeded),
                "no job of the failed backup reported success");
        for (DemoJobs.Outcome o : ends.values()) {
            rows.add(new Row(
                    o.job() + " (failed as planned)", 0, o.millis(), 0, o.error() == null ? o.event() : o.error()));
        }
        return ends;
    }

    private Path snapshot(Path disk) throws IOException {
        Path snap = dir.resolve("snapshot." + snapshots++ + ".raw");
        tool.ok("convert", "-U", "-f", "qcow2", "-O", "raw", disk.toString(), snap.toString());
        return snap;
    }

    /** Guest writes at random places; remembers the bytes they dirty at 64 KiB granularity. */
    private void guestWrites(String drive, int count) throws IOException {
        lastWritesBytes = 0;
        for (int i = 0; i < count; i++) {
            long offset = (random.nextLong(DISK_SIZE - 2 * MIB)) & -4096L;
            long len = 4096L << random.nextInt(9);
            long g = 64 << 10;
            lastWritesBytes += ((offset + len + g - 1) / g - offset / g) * g;
            int pattern = 1 + random.nextInt(254);
            String cmd = "qemu-io " + drive + " \"write -P " + pattern + " " + offset + " " + len + "\"";
            Object r = qmp.ok("human-monitor-command", obj("command-line", cmd));
            // as QEMU's HMP qemu-io: nothing printed means the write went through
            if (!"".equals(r)) {
                check(false, "guest write on " + drive + ": " + r);
            }
        }
    }

    @SuppressWarnings("unchecked")
    private long bitmapCount(String drive) throws IOException {
        qmp.quiet(true);
        try {
            for (Object n : (List<Object>) qmp.ok("query-named-block-nodes", null)) {
                Map<String, Object> node = (Map<String, Object>) n;
                if (drive.equals(node.get("node-name")) && node.get("dirty-bitmaps") instanceof List<?> l) {
                    for (Object b : l) {
                        Map<String, Object> bitmap = (Map<String, Object>) b;
                        if ("bitmap0".equals(bitmap.get("name"))) {
                            return ((Number) bitmap.get("count")).longValue();
                        }
                    }
                }
            }
        } finally {
            qmp.quiet(false);
        }
        throw new DemoQmp.DemoFailure(drive + " has no bitmap0");
    }

    private void fill(Path disk) throws IOException {
        byte[] data = new byte[(int) MIB];
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(disk.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            for (long off = 0; off < DISK_SIZE; off += 8 * MIB) {
                random.nextBytes(data);
                n.write(off, ByteBuffer.wrap(data));
            }
        }
    }

    private static String blockdev(String name, Path disk) {
        return "{\"driver\":\"qcow2\",\"node-name\":\"" + name + "\",\"file\":{\"driver\":\"file\",\"filename\":\""
                + disk + "\"}}";
    }

    /** A JSON object whose members print in the order given, as the seed writes them. */
    private static Map<String, Object> obj(Object... keysAndValues) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < keysAndValues.length; i += 2) {
            m.put((String) keysAndValues[i], keysAndValues[i + 1]);
        }
        return m;
    }

    private static Map<String, Object> action(String type, Map<String, Object> data) {
        return obj("type", type, "data", data);
    }

    private static Map<String, Object> fullBackup(String drive, Path target) {
        return obj("device", drive, "target", target.toString(), "sync", "full", "format", "qcow2");
    }

    private static Map<String, Object> incremental(String drive, Path target) {
        return obj(
                "device",
                drive,
                "bitmap",
                "bitmap0",
                "target",
                target.toString(),
                "format",
                "qcow2",
                "sync",
                "incremental",
                "mode",
                "existing");
    }

    /** A qcow2 target whose file fails the first data write with ENOSPC (QEMU's blkdebug). */
    private static Map<String, Object> failingTarget(String name, Path image) {
        return obj(
                "driver",
                "qcow2",
                "node-name",
                name,
                "file",
                obj(
                        "driver",
                        "blkdebug",
                        "image",
                        obj("driver", "file", "filename", image.toString()),
                        "inject-error",
                        List.of(obj("event", "write_aio", "errno", 28, "once", true))));
    }

    private void step(String title) {
        out.println();
        out.println("== " + title);
    }

    private void check(boolean held, String what) {
        out.println((held ? "   ok: " : "   FAILED: ") + what);
        allHeld &= held;
    }

    private void table() {
        out.println();
        out.printf("%-40s %12s %9s %9s  %s%n", "image", "size", "time", "MB/s", "verified");
        for (Row r : rows) {
            out.printf(
                    "%-40s %12s %7d ms %9.1f  %s%n",
                    r.image(),
                    r.size() == 0 ? "-" : String.format("%,d", r.size()),
                    r.millis(),
                    r.mbPerSecond(),
                    r.verified());
        }
        out.println();
        out.println(allHeld ? "Every check held." : "Some checks FAILED.");
    }
}
