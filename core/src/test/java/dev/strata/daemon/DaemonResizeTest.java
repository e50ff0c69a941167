package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 6's scenario through the daemon: a qcow2 disk with three dirty bitmaps (granularities
 * 4 KiB, 512 B, 64 KiB) grows with block_resize across an L1 table boundary, the guest writes into
 * the new area and the old one, and an incremental backup holds exactly those writes; then a
 * shrink drops the bits past the new end, a grow keeps every set bit, and a differential backup
 * taken from the untouched bitmap still equals the disk.
 *
 * <p>Every check is one a user can make: {@code qemu-img compare} of the backup chain against
 * the disk, {@code qemu-img map} of the backup (only the 64 KiB backup clusters the writes touched
 * are allocated in it), and the bitmaps' counts in {@code query-named-block-nodes} against a model
 * of the written ranges.
 */
class DaemonResizeTest {
    private static final long MiB = 1 << 20;
    private static final long BACKUP_CLUSTER = 64 * 1024;
    private static final long[] GRANULARITY = {4096, 512, 65536};
    private static final String[] BITMAP = {"b0", "b1", "b2"};

    @TempDir
    Path dir;

    private Daemon daemon;
    private QmpClient qmp;
    /** Guest writes since the full backup: {offset, length}. */
    private final List<long[]> written = new ArrayList<>();
    /** The disk as the guest should read it. */
    private byte[] model;

    @BeforeEach
    void start() throws Exception {
        Interop.require("qemu-img");
        Interop.require("qemu-io");
        Path disk = dir.resolve("disk.qcow2");
        // 4 KiB clusters: an L2 table maps 2 MiB, so growing 64 MiB to 192 MiB moves the L1 table
        Interop.qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", disk.toString(), "64M")
                .assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write -P 0x11 0 32M", "-c", "write -P 0x12 48M 8M", disk.toString())
                .assertOk();
        model = new byte[(int) (64 * MiB)];
        Arrays.fill(model, 0, (int) (32 * MiB), (byte) 0x11);
        Arrays.fill(model, (int) (48 * MiB), (int) (56 * MiB), (byte) 0x12);
        Path socket = dir.resolve("qmp.sock");
        daemon = Daemon.start(
                List.of(
                        new Daemon.Blockdev("driver=qcow2,node-name=drive0,file.driver=file,file.filename=" + disk),
                        new Daemon.QmpSocket("unix:" + socket + ",server=on,wait=off")),
                "test");
        qmp = QmpClient.connect(socket).negotiate();
    }

    @AfterEach
    void stop() throws IOException {
        if (qmp != null) {
            qmp.close();
        }
        if (daemon != null) {
            daemon.shutdown();
        }
    }

    private void write(long offset, long length, int pattern) throws IOException {
        Object r = qmp.ok(
                "human-monitor-command",
                args("command-line", "qemu-io drive0 \"write -P " + pattern + " " + offset + " " + length + "\""));
        assertThat(r).isEqualTo("");
        Arrays.fill(model, (int) offset, (int) (offset + length), (byte) pattern);
        written.add(new long[] {offset, length});
    }

    private void resize(long size) throws IOException {
        assertThat(qmp.ok("block_resize", args("node-name", "drive0", "size", size)))
                .isEqualTo(Map.of());
        model = Arrays.copyOf(model, (int) size);
    }

    /** The chunks of {@code granularity} the writes still inside a disk of {@code size} bytes touched. */
    private TreeSet<Long> chunks(long granularity, long size) {
        TreeSet<Long> out = new TreeSet<>();
        for (long[] w : written) {
            for (long c = w[0] / granularity; c <= (w[0] + w[1] - 1) / granularity; c++) {
                if (c * granularity < size) {
                    out.add(c);
                }
            }
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private long count(String name) throws IOException {
        for (Map<String, Object> n : (List<Map<String, Object>>) qmp.ok("query-named-block-nodes", null)) {
            if (n.get("node-name").equals("drive0")) {
                for (Map<String, Object> b : (List<Map<String, Object>>) n.get("dirty-bitmaps")) {
                    if (b.get("name").equals(name)) {
                        return ((Number) b.get("count")).longValue();
                    }
                }
            }
        }
        throw new AssertionError("no bitmap " + name);
    }

    private long[] counts() throws IOException {
        long[] out = new long[BITMAP.length];
        for (int i = 0; i < BITMAP.length; i++) {
            out[i] = count(BITMAP[i]);
        }
        return out;
    }

    private void assertCountsMatchTheWrites(String when) throws IOException {
        for (int i = 0; i < BITMAP.length; i++) {
            assertThat(count(BITMAP[i]))
                    .as("%s: count of %s (granularity %d)", when, BITMAP[i], GRANULARITY[i])
                    .isEqualTo(chunks(GRANULARITY[i], model.length).size() * GRANULARITY[i]);
        }
    }

    /** Runs a backup and waits for it to complete successfully. */
    @SuppressWarnings("unchecked")
    private void backup(Map<String, Object> arguments) throws IOException {
        qmp.ok("drive-backup", arguments);
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (System.nanoTime() < deadline) {
            for (Map<String, Object> e : qmp.events(1, 200)) {
                if ("BLOCK_JOB_COMPLETED".equals(e.get("event"))) {
                    assertThat((Map<String, Object>) e.get("data"))
                            .as("backup %s", arguments)
                            .doesNotContainKey("error");
                    return;
                }
            }
        }
        throw new AssertionError("backup did not complete: " + arguments);
    }

    private void createOverlay(String name, long size) throws Exception {
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-b",
                        dir.resolve("full.qcow2").toString(),
                        "-F",
                        "qcow2",
                        dir.resolve(name).toString(),
                        Long.toString(size))
                .assertOk();
    }

    /** The ranges a backup image holds itself, merged: qemu-img map's depth-0 data extents. */
    private List<List<Long>> ownData(String image) throws Exception {
        String out = Interop.qemuImg(
                        "map", "-U", "--output=json", dir.resolve(image).toString())
                .assertOk()
                .stdout();
        List<List<Long>> ranges = new ArrayList<>();
        for (JsonNode e : new ObjectMapper().readTree(out)) {
            if (e.get("depth").asInt() == 0 && e.get("data").asBoolean()) {
                addRange(ranges, e.get("start").asLong(), e.get("length").asLong());
            }
        }
        return ranges;
    }

    private static void addRange(List<List<Long>> ranges, long start, long length) {
        if (!ranges.isEmpty() && ranges.getLast().get(1) == start) {
            ranges.set(ranges.size() - 1, List.of(ranges.getLast().get(0), start + length));
        } else {
            ranges.add(List.of(start, start + length));
        }
    }

    /** The backup clusters covering the dirty chunks of {@code granularity}, merged. */
    private List<List<Long>> expectedData(long granularity) {
        TreeSet<Long> clusters = new TreeSet<>();
        for (long c : chunks(granularity, model.length)) {
            clusters.add(c * granularity / BACKUP_CLUSTER);
        }
        List<List<Long>> ranges = new ArrayList<>();
        for (long c : clusters) {
            long start = c * BACKUP_CLUSTER;
            addRange(ranges, start, Math.min(BACKUP_CLUSTER, model.length - start));
        }
        return ranges;
    }

    private void assertChainEqualsDisk(String image) throws Exception {
        Interop.Result r = Interop.qemuImg(
                "compare",
                "-U",
                dir.resolve(image).toString(),
                dir.resolve("disk.qcow2").toString());
        assertThat(r.exitCode())
                .as("qemu-img compare %s disk: %s%s", image, r.stdout(), r.stderr())
                .isZero();
    }

    private void assertDiskEqualsModel() throws Exception {
        Path raw = dir.resolve("model.raw");
        try (RandomAccessFile f = new RandomAccessFile(raw.toFile(), "rw")) {
            f.setLength(0);
            f.write(model);
        }
        Interop.Result r = Interop.qemuImg(
                "compare",
                "-U",
                "-f",
                "qcow2",
                "-F",
                "raw",
                dir.resolve("disk.qcow2").toString(),
                raw.toString());
        assertThat(r.exitCode())
                .as("disk against the model: %s%s", r.stdout(), r.stderr())
                .isZero();
    }

    @Test
    void bitmapsFollowTheDiskThroughGrowAndShrinkAndBackupsHoldExactlyTheWrites() throws Exception {
        // t0: three bitmaps and a full backup in one transaction
        List<Object> actions = new ArrayList<>();
        for (int i = 0; i < BITMAP.length; i++) {
            actions.add(args(
                    "type",
                    "block-dirty-bitmap-add",
                    "data",
                    args("node", "drive0", "name", BITMAP[i], "granularity", GRANULARITY[i])));
        }
        qmp.ok("transaction", args("actions", actions));
        backup(args(
                "device", "drive0", "target", dir.resolve("full.qcow2").toString(), "sync", "full", "format", "qcow2"));

        // writes in the old area, then a grow that keeps every set bit
        write(MiB + 4096, 8192, 0x21);
        write(60 * MiB, 65536, 0x22);
        assertCountsMatchTheWrites("before the grow");
        long[] before = counts();
        resize(192 * MiB);
        assertThat(counts()).as("the grow keeps every set bit and adds none").containsExactly(before);

        // writes into the new area (right at the old end, unaligned, at the very end) and the old one
        write(64 * MiB, 4096, 0x31);
        write(100 * MiB + 512, 3000, 0x32);
        write(192 * MiB - 8192, 8192, 0x33);
        write(0, 4096, 0x34);
        write(63 * MiB + 512, 1024, 0x35);
        assertCountsMatchTheWrites("after writes into the grown disk");
        assertDiskEqualsModel();

        // the incremental backup from b0 holds exactly those writes
        createOverlay("inc.qcow2", 192 * MiB);
        backup(args(
                "device",
                "drive0",
                "target",
                dir.resolve("inc.qcow2").toString(),
                "format",
                "qcow2",
                "sync",
                "incremental",
                "bitmap",
                "b0",
                "mode",
                "existing"));
        assertChainEqualsDisk("inc.qcow2");
        assertThat(ownData("inc.qcow2"))
                .as("qemu-img map of the incremental backup: only the clusters written since t0")
                .isEqualTo(expectedData(GRANULARITY[0]));
        assertThat(count("b0")).as("b0 after its backup").isZero();
        for (int i = 1; i < BITMAP.length; i++) {
            assertThat(count(BITMAP[i]))
                    .as("%s keeps counting since t0", BITMAP[i])
                    .isEqualTo(chunks(GRANULARITY[i], model.length).size() * GRANULARITY[i]);
        }

        // writes on both sides of the coming end, then a shrink: exactly the bits past the end go
        write(10 * MiB, 4096, 0x41);
        write(150 * MiB, 65536, 0x42);
        write(191 * MiB, 4096, 0x43);
        long[] beforeShrink = counts();
        resize(128 * MiB);
        for (int i = 1; i < BITMAP.length; i++) {
            long cut = chunks(GRANULARITY[i], 192 * MiB).size()
                    - chunks(GRANULARITY[i], 128 * MiB).size();
            assertThat(count(BITMAP[i]))
                    .as("%s after the shrink: down by the bits cut", BITMAP[i])
                    .isEqualTo(beforeShrink[i] - cut * GRANULARITY[i])
                    .isEqualTo(chunks(GRANULARITY[i], 128 * MiB).size() * GRANULARITY[i]);
        }
        assertThat(count("b0"))
                .as("b0 after the shrink: only the write it kept")
                .isEqualTo(4096);
        long[] afterShrink = counts();
        resize(192 * MiB);
        assertThat(counts()).as("growing again keeps every bit and adds none").containsExactly(afterShrink);
        assertDiskEqualsModel();

        // a differential backup from b1 (never cleared): everything since t0, nothing of the cut
        written.removeIf(w -> w[0] >= 128 * MiB);
        createOverlay("diff.qcow2", 192 * MiB);
        backup(args(
                "device",
                "drive0",
                "target",
                dir.resolve("diff.qcow2").toString(),
                "format",
                "qcow2",
                "sync",
                "incremental",
                "bitmap",
                "b1",
                "mode",
                "existing"));
        assertChainEqualsDisk("diff.qcow2");
        assertThat(ownData("diff.qcow2"))
                .as("qemu-img map of the differential backup: the writes since t0 the disk still holds")
                .isEqualTo(expectedData(GRANULARITY[1]));
        assertThat(Interop.qemuImg("check", "-U", dir.resolve("disk.qcow2").toString())
                        .exitCode())
                .isZero();
    }
}
