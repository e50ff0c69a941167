package dev.strata.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * An in-process daemon with two raw drives full of seeded data, a QMP client that keeps every
 * event it sees, and the checks backup tests share: snapshots of a drive (a copy of its raw file
 * taken while no write is in flight) and {@code qemu-img compare} of a backup against one.
 */
final class BackupFixture implements AutoCloseable {
    static final long MiB = 1 << 20;
    static final long SIZE = 64 * MiB;

    final Path dir;
    final Daemon daemon;
    final QmpClient qmp;
    /** Every event received, in order. */
    final List<Map<String, Object>> events = new ArrayList<>();

    BackupFixture(Path dir) throws Exception {
        this(dir, false);
    }

    /**
     * With {@code drives}, drive0 and drive1 are drives ({@code --drive id=drive0,...,node-name=node0})
     * instead of nodes named drive0 and drive1, as in a QEMU VM.
     */
    BackupFixture(Path dir, boolean drives) throws Exception {
        this.dir = dir;
        fill(dir.resolve("d0.raw"), 1);
        fill(dir.resolve("d1.raw"), 2);
        Path socket = dir.resolve("qmp.sock");
        List<Daemon.StartupOption> disks = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            Path file = dir.resolve("d" + i + ".raw");
            disks.add(
                    drives
                            ? new Daemon.DriveOption(
                                    "id=drive" + i + ",file=" + file + ",format=raw,node-name=node" + i + ",if=none")
                            : new Daemon.Blockdev(
                                    "driver=raw,node-name=drive" + i + ",file.driver=file,file.filename=" + file));
        }
        disks.add(new Daemon.QmpSocket("unix:" + socket + ",server=on,wait=off"));
        daemon = Daemon.start(disks, "test");
        qmp = QmpClient.connect(socket).negotiate();
    }

    /** A drive file: random data in most 1 MiB pieces, some left as holes (zeros). */
    static void fill(Path p, long seed) throws IOException {
        SplittableRandom r = new SplittableRandom(seed);
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(SIZE);
            byte[] b = new byte[(int) MiB];
            for (long off = 0; off < SIZE; off += MiB) {
                if (r.nextInt(4) != 0) {
                    r.nextBytes(b);
                    f.seek(off);
                    f.write(b);
                }
            }
        }
    }

    static Map<String, Object> args(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    /** The seed's first transaction: bitmap0 on drive0 and a full backup into {@code target}, plus extra backup arguments. */
    static Map<String, Object> bitmapAndFullBackup(Path target, Object... extra) {
        Map<String, Object> backup =
                args("device", "drive0", "target", target.toString(), "sync", "full", "format", "qcow2");
        backup.putAll(args(extra));
        return args(
                "actions",
                List.of(
                        args("type", "block-dirty-bitmap-add", "data", args("node", "drive0", "name", "bitmap0")),
                        args("type", "drive-backup", "data", backup)));
    }

    /** Starts the NBD server on a UNIX socket (QMP's legacy address form). */
    void startNbd(Path socket) throws IOException {
        qmp.ok("nbd-server-start", args("addr", args("type", "unix", "data", args("path", socket.toString()))));
    }

    /** A guest write through qemu-io; fails the test if qemu-io reports a problem. */
    void write(String drive, String qemuIoCommand) throws IOException {
        Object r = qmp.ok(
                "human-monitor-command", args("command-line", "qemu-io " + drive + " \"" + qemuIoCommand + "\""));
        assertThat(r).as(qemuIoCommand).isEqualTo("");
    }

    /** Seeded random guest writes of 4 KiB to 192 KiB across the drive. */
    void randomWrites(String drive, long seed, int count) throws IOException {
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = 0; i < count; i++) {
            long off = r.nextLong(SIZE / 4096) * 4096;
            long len = Math.min(SIZE - off, 4096L * (1 + r.nextInt(48)));
            write(drive, "write -P 0x" + Integer.toHexString(1 + r.nextInt(254)) + " " + off + " " + len);
        }
    }

    /** A copy of a drive's raw file: the disk as the guest sees it now. */
    Path snapshot(String drive, String name) throws IOException {
        Path out = dir.resolve(name);
        Files.copy(dir.resolve(drive.equals("drive0") ? "d0.raw" : "d1.raw"), out, StandardCopyOption.REPLACE_EXISTING);
        return out;
    }

    static void assertSame(Path snapshot, Path backup) throws Exception {
        assertSame(snapshot, backup, "qcow2");
    }

    static void assertSame(Path snapshot, Path backup, String format) throws Exception {
        Interop.Result r =
                Interop.qemuImg("compare", "-f", "raw", "-F", format, snapshot.toString(), backup.toString());
        assertThat(r.exitCode())
                .as("qemu-img compare %s %s: %s %s", snapshot, backup, r.stdout(), r.stderr())
                .isZero();
    }

    void createQcow2(String name, String backing) throws Exception {
        Path p = dir.resolve(name);
        Files.deleteIfExists(p);
        if (backing == null) {
            Interop.qemuImg("create", "-q", "-f", "qcow2", p.toString(), Long.toString(SIZE))
                    .assertOk();
        } else {
            Interop.qemuImg(
                            "create",
                            "-q",
                            "-f",
                            "qcow2",
                            p.toString(),
                            "-b",
                            dir.resolve(backing).toString(),
                            "-F",
                            "qcow2")
                    .assertOk();
        }
    }

    /** Waits for the event {@code name} about job {@code device} (30 s), returning its data. */
    @SuppressWarnings("unchecked")
    Map<String, Object> awaitEvent(String name, String device) throws IOException {
        long deadline = System.nanoTime() + 30_000_000_000L;
        int from = 0;
        while (System.nanoTime() < deadline) {
            for (int i = from; i < events.size(); i++) {
                Map<String, Object> e = events.get(i);
                Map<String, Object> data = (Map<String, Object>) e.getOrDefault("data", Map.of());
                if (name.equals(e.get("event")) && (device == null || device.equals(data.get("device")))) {
                    events.remove(i);
                    return data;
                }
            }
            from = events.size();
            events.addAll(qmp.events(1, 100));
        }
        throw new AssertionError("no " + name + " for " + device + " within 30 s; saw " + events);
    }

    /** Waits until no job is listed any more. */
    void awaitNoJobs() throws Exception {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (!((List<?>) qmp.ok("query-jobs", null)).isEmpty()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("jobs left: " + qmp.ok("query-jobs", null));
            }
            Thread.sleep(5);
        }
        events.addAll(qmp.events(0, 0));
    }

    @SuppressWarnings("unchecked")
    Map<String, Object> bitmap(String drive, String name) throws IOException {
        for (Object o : (List<Object>) qmp.ok("query-block", null)) {
            Map<String, Object> info = (Map<String, Object>) o;
            if (info.get("device").equals(drive)) {
                Map<String, Object> inserted = (Map<String, Object>) info.get("inserted");
                for (Object b : (List<Object>) inserted.getOrDefault("dirty-bitmaps", List.of())) {
                    Map<String, Object> bm = (Map<String, Object>) b;
                    if (name.equals(bm.get("name"))) {
                        return bm;
                    }
                }
            }
        }
        throw new AssertionError("no bitmap " + name + " on " + drive);
    }

    /**
     * Adds node {@code name}: an in-memory disk of the drives' size that fails on demand (the
     * test-only "faulty" driver), holding a copy of drive {@code copyOf}'s data when not null.
     */
    dev.strata.testing.FaultyDisk addFaulty(String name, String copyOf) throws Exception {
        dev.strata.testing.FaultyDisk disk = new dev.strata.testing.FaultyDisk(SIZE);
        if (copyOf != null) {
            byte[] bytes = Files.readAllBytes(dir.resolve(copyOf.equals("drive0") ? "d0.raw" : "d1.raw"));
            disk.write(0, java.nio.ByteBuffer.wrap(bytes));
        }
        daemon.qmp().underCommandLock(() -> {
            if (!daemon.graph().hasDriver("faulty")) {
                daemon.graph().register("faulty", (o, ctx) -> pending);
            }
            pending = disk;
            return daemon.graph()
                    .add(dev.strata.block.BlockOptions.empty()
                            .put("driver", "faulty")
                            .put("node-name", name));
        });
        return disk;
    }

    private volatile dev.strata.testing.FaultyDisk pending;

    /** A faulty disk's content as a raw file, for qemu-img compare. */
    Path faultySnapshot(dev.strata.testing.FaultyDisk disk, String name) throws IOException {
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate((int) SIZE);
        disk.read(0, b);
        Path out = dir.resolve(name);
        Files.write(out, b.array());
        return out;
    }

    @Override
    public void close() throws IOException {
        qmp.close();
        daemon.shutdown();
    }
}
