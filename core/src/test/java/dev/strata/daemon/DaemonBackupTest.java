package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static dev.strata.daemon.BackupFixture.assertSame;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.qmp.QmpClient;
import dev.strata.testing.FaultyDisk;
import dev.strata.testing.Interop;
import dev.strata.testing.LockHolder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Backups while the guest writes, cancelled, failing, in individual and grouped transactions:
 * the point in time (ARCHITECTURE.md invariant 3) checked with qemu-img compare, and the bitmaps
 * (invariant 4) checked by count, by SHA-256 and by the next incremental backup being exact.
 * Failures come from the test-only "faulty" disk, which fails reads or writes on demand.
 */
class DaemonBackupTest {
    static final long MiB = BackupFixture.MiB;

    @TempDir
    Path dir;

    BackupFixture f;
    QmpClient qmp;

    @BeforeEach
    void start() throws Exception {
        Interop.require("qemu-img");
        f = new BackupFixture(dir);
        qmp = f.qmp;
    }

    @AfterEach
    void stop() throws IOException {
        if (f != null) {
            f.close();
        }
    }

    private static Map<String, Object> action(String type, Map<String, Object> data) {
        return args("type", type, "data", data);
    }

    private Map<String, Object> fullWithBitmap(String drive, String bitmap, String target) {
        return args(
                "actions",
                List.of(
                        action("block-dirty-bitmap-add", args("node", drive, "name", bitmap)),
                        action(
                                "drive-backup",
                                args(
                                        "device",
                                        drive,
                                        "target",
                                        dir.resolve(target).toString(),
                                        "sync",
                                        "full",
                                        "format",
                                        "qcow2"))));
    }

    private String sha(String node, String name) throws IOException {
        @SuppressWarnings("unchecked")
        Map<String, Object> r =
                (Map<String, Object>) qmp.ok("x-debug-block-dirty-bitmap-sha256", args("node", node, "name", name));
        return (String) r.get("sha256");
    }

    private Map<String, Object> incremental(String drive, String bitmap, String target, Object... extra) {
        Map<String, Object> a = args(
                "device",
                drive,
                "bitmap",
                bitmap,
                "target",
                dir.resolve(target).toString(),
                "format",
                "qcow2",
                "sync",
                "incremental",
                "mode",
                "existing");
        for (int i = 0; i < extra.length; i += 2) {
            a.put((String) extra[i], extra[i + 1]);
        }
        return a;
    }

    @Test
    void guestWritesDuringAFullAndAnIncrementalBackupDoNotReachThem() throws Exception {
        Path s0 = f.snapshot("drive0", "s0.raw");
        Map<String, Object> txn = fullWithBitmap("drive0", "bitmap0", "full.qcow2");
        @SuppressWarnings("unchecked")
        Map<String, Object> backupArgs =
                (Map<String, Object>) ((Map<String, Object>) ((List<Object>) txn.get("actions")).get(1)).get("data");
        backupArgs.put("speed", 16 * MiB);
        qmp.ok("transaction", txn);
        @SuppressWarnings("unchecked")
        Map<String, Object> info = ((List<Map<String, Object>>) qmp.ok("query-block-jobs", null)).getFirst();
        assertThat(info)
                .containsEntry("type", "backup")
                .containsEntry("device", "drive0")
                .containsEntry("len", BackupFixture.SIZE)
                .containsEntry("speed", 16 * MiB)
                .containsEntry("io-status", "ok")
                .containsEntry("ready", false)
                .containsEntry("status", "running")
                .containsEntry("auto-finalize", true)
                .containsEntry("auto-dismiss", true);
        f.randomWrites("drive0", 11, 150);
        f.write("drive0", "write -z 0 4M");
        f.write("drive0", "discard 8M 4M");
        Path s1 = f.snapshot("drive0", "s1.raw");
        Map<String, Object> done = f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        assertThat(done).doesNotContainKey("error").containsEntry("len", BackupFixture.SIZE);
        assertSame(s0, dir.resolve("full.qcow2"));

        // the bitmap started at the backup's point in time: an incremental now gives s1 exactly
        f.createQcow2("inc0.qcow2", "full.qcow2");
        qmp.ok("drive-backup", incremental("drive0", "bitmap0", "inc0.qcow2", "speed", 4 * MiB));
        f.randomWrites("drive0", 12, 100);
        Path s2 = f.snapshot("drive0", "s2.raw");
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        assertSame(s1, dir.resolve("inc0.qcow2"));

        // and the writes made during that incremental are in the next one
        f.createQcow2("inc1.qcow2", "inc0.qcow2");
        qmp.ok("drive-backup", incremental("drive0", "bitmap0", "inc1.qcow2"));
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        assertSame(s2, dir.resolve("inc1.qcow2"));
        f.awaitNoJobs();
    }

    @Test
    void cancelMergesTheSuccessorBack() throws Exception {
        qmp.ok("transaction", fullWithBitmap("drive0", "bitmap0", "full.qcow2"));
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        f.randomWrites("drive0", 21, 60);
        String before = sha("drive0", "bitmap0");
        long count = (Long) f.bitmap("drive0", "bitmap0").get("count");
        f.createQcow2("inc0.qcow2", "full.qcow2");
        qmp.ok("drive-backup", incremental("drive0", "bitmap0", "inc0.qcow2", "speed", 1L));
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("busy", true).containsEntry("recording", true);
        assertThat(QmpClient.errorOf(
                        qmp.execute("block-dirty-bitmap-clear", args("node", "drive0", "name", "bitmap0"))))
                .isEqualTo(
                        "GenericError: Bitmap 'bitmap0' is currently in use by another operation and cannot be used");
        assertThat(QmpClient.errorOf(qmp.execute("blockdev-del", args("node-name", "drive0"))))
                .isEqualTo("GenericError: Block device drive0 is in use");
        qmp.ok("block-job-cancel", args("device", "drive0"));
        Map<String, Object> cancelled = f.awaitEvent("BLOCK_JOB_CANCELLED", "drive0");
        assertThat(cancelled).containsOnlyKeys("type", "device", "len", "offset", "speed");
        f.awaitNoJobs();
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("busy", false).containsEntry("count", count);
        assertThat(sha("drive0", "bitmap0")).isEqualTo(before);

        // writes during a cancelled job are kept too: the retry is exact
        qmp.ok("drive-backup", incremental("drive0", "bitmap0", "inc0.qcow2", "speed", 1L));
        f.randomWrites("drive0", 22, 30);
        qmp.ok("job-cancel", args("id", "drive0"));
        f.awaitEvent("BLOCK_JOB_CANCELLED", "drive0");
        f.awaitNoJobs();
        assertThat((Long) f.bitmap("drive0", "bitmap0").get("count")).isGreaterThanOrEqualTo(count);
        Path s = f.snapshot("drive0", "s.raw");
        f.createQcow2("inc0.qcow2", "full.qcow2");
        qmp.ok("drive-backup", incremental("drive0", "bitmap0", "inc0.qcow2"));
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        assertSame(s, dir.resolve("inc0.qcow2"));
    }

    /** The seed's error example: ENOSPC on the target, the bitmap kept, a retry that succeeds. */
    @Test
    void targetOutOfSpaceThenRetry() throws Exception {
        FaultyDisk bad = f.addFaulty("target0", null);
        bad.failWrites(28);
        qmp.ok("transaction", fullWithBitmap("drive0", "bitmap0", "full.qcow2"));
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        f.randomWrites("drive0", 31, 40);
        long count = (Long) f.bitmap("drive0", "bitmap0").get("count");
        String sha = sha("drive0", "bitmap0");
        qmp.ok(
                "blockdev-backup",
                args("device", "drive0", "bitmap", "bitmap0", "target", "target0", "sync", "incremental"));
        assertThat(f.awaitEvent("BLOCK_JOB_ERROR", "drive0"))
                .isEqualTo(Map.of("device", "drive0", "operation", "write", "action", "report"));
        Map<String, Object> done = f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        assertThat(done)
                .containsEntry("error", "No space left on device")
                .containsEntry("offset", 0L)
                .containsEntry("len", count)
                .containsEntry("speed", 0L);
        f.awaitNoJobs();
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("count", count);
        assertThat(sha("drive0", "bitmap0")).isEqualTo(sha);

        Path s = f.snapshot("drive0", "s.raw");
        f.createQcow2("inc0.qcow2", "full.qcow2");
        qmp.ok("drive-backup", incremental("drive0", "bitmap0", "inc0.qcow2"));
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0")).containsEntry("offset", count);
        assertSame(s, dir.resolve("inc0.qcow2"));
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("count", 0L);
    }

    /** The seed's error example with QEMU's own error injection: blkdebug under a qcow2 target. */
    @Test
    void targetOutOfSpaceThroughBlkdebug() throws Exception {
        qmp.ok("transaction", fullWithBitmap("drive0", "bitmap0", "full.qcow2"));
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        f.randomWrites("drive0", 35, 30);
        String sha = sha("drive0", "bitmap0");
        f.createQcow2("incremental.0.img", "full.qcow2");
        qmp.ok(
                "blockdev-add",
                args(
                        "driver", "qcow2",
                        "node-name", "inc0",
                        "file",
                                args(
                                        "driver", "blkdebug",
                                        "image",
                                                args(
                                                        "driver",
                                                        "file",
                                                        "filename",
                                                        dir.resolve("incremental.0.img")
                                                                .toString()),
                                        "inject-error",
                                                List.of(args("event", "write_aio", "errno", 28, "once", true)))));
        qmp.ok(
                "blockdev-backup",
                args("device", "drive0", "target", "inc0", "sync", "incremental", "bitmap", "bitmap0"));
        assertThat(f.awaitEvent("BLOCK_JOB_ERROR", "drive0")).containsEntry("operation", "write");
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0")).containsEntry("error", "No space left on device");
        f.awaitNoJobs();
        assertThat(sha("drive0", "bitmap0")).isEqualTo(sha);
        qmp.ok("blockdev-del", args("node-name", "inc0"));

        // delete the failed image, recreate it, retry: the seed's steps 4 to 6
        Path s = f.snapshot("drive0", "s.raw");
        f.createQcow2("incremental.0.img", "full.qcow2");
        qmp.ok("drive-backup", incremental("drive0", "bitmap0", "incremental.0.img"));
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0")).doesNotContainKey("error");
        assertSame(s, dir.resolve("incremental.0.img"));
    }

    @Test
    void shutdownCancelsRunningJobsAndClosesTheirTargets() throws Exception {
        Path t = dir.resolve("t.qcow2");
        qmp.ok(
                "drive-backup",
                args("device", "drive0", "target", t.toString(), "sync", "full", "format", "qcow2", "speed", 1));
        assertThat(qmp.ok("quit", null)).isEqualTo(Map.of());
        // the client hears how the job ended before the daemon goes
        assertThat(f.awaitEvent("BLOCK_JOB_CANCELLED", "drive0")).containsEntry("speed", 1L);
        f.daemon.awaitShutdown();
        assertThat(Interop.qemuImg("check", t.toString()).exitCode()).isZero();
    }

    @Test
    void onTargetErrorStopPausesUntilResumed() throws Exception {
        FaultyDisk target = f.addFaulty("target0", null);
        target.failWrites(28);
        Path s0 = f.snapshot("drive0", "s0.raw");
        qmp.ok(
                "blockdev-backup",
                args("device", "drive0", "target", "target0", "sync", "full", "on-target-error", "stop"));
        assertThat(f.awaitEvent("BLOCK_JOB_ERROR", "drive0")).containsEntry("action", "stop");
        long deadline = System.nanoTime() + 10_000_000_000L;
        Map<String, Object> info;
        do {
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> jobs = (List<Map<String, Object>>) qmp.ok("query-block-jobs", null);
            info = jobs.getFirst();
        } while (!"paused".equals(info.get("status")) && System.nanoTime() < deadline);
        assertThat(info).containsEntry("paused", true).containsEntry("io-status", "nospace");
        // copy-before-write cannot save the old data, so the guest's write fails (QEMU 7.2's only
        // behaviour; on-cbw-error came in 10.1) and the disk keeps its point in time
        assertThat(qmp.ok("human-monitor-command", args("command-line", "qemu-io drive0 \"write 0 64k\"")))
                .asString()
                .contains("No space left on device");
        target.failWrites(0);
        f.randomWrites("drive0", 41, 20);
        qmp.ok("block-job-resume", args("device", "drive0"));
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0")).doesNotContainKey("error");
        assertSame(s0, f.faultySnapshot(target, "t.raw"), "raw");
    }

    @Test
    void onSourceErrorIgnoreRetriesUntilTheErrorGoes() throws Exception {
        FaultyDisk bad = f.addFaulty("bad1", "drive1");
        Path s = f.faultySnapshot(bad, "s.raw");
        bad.failReads(5);
        f.createQcow2("t.qcow2", null);
        qmp.ok(
                "drive-backup",
                args(
                        "device",
                        "bad1",
                        "target",
                        dir.resolve("t.qcow2").toString(),
                        "sync",
                        "full",
                        "format",
                        "qcow2",
                        "mode",
                        "existing",
                        "on-source-error",
                        "ignore"));
        assertThat(f.awaitEvent("BLOCK_JOB_ERROR", "bad1"))
                .containsEntry("action", "ignore")
                .containsEntry("operation", "read");
        assertThat(f.awaitEvent("BLOCK_JOB_ERROR", "bad1")).containsEntry("action", "ignore");
        bad.failReads(0);
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "bad1")).doesNotContainKey("error");
        f.awaitNoJobs();
        assertSame(s, dir.resolve("t.qcow2"));
    }

    @Test
    void partialTransactionalFailure() throws Exception {
        FaultyDisk bad = f.addFaulty("bad1", "drive1");
        qmp.ok("transaction", fullWithBitmap("drive0", "bitmap0", "full0.qcow2"));
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        qmp.ok("block-dirty-bitmap-add", args("node", "bad1", "name", "bitmap1"));
        f.randomWrites("drive0", 51, 20);
        f.write("bad1", "write -P 0x5a 1M 1M");
        String sha1 = sha("bad1", "bitmap1");
        f.createQcow2("d0.qcow2", "full0.qcow2");
        f.createQcow2("d1.qcow2", null);
        bad.failReads(5);
        qmp.ok(
                "transaction",
                args(
                        "actions",
                        List.of(
                                action("drive-backup", incremental("drive0", "bitmap0", "d0.qcow2")),
                                action("drive-backup", incremental("bad1", "bitmap1", "d1.qcow2")))));
        assertThat(f.awaitEvent("BLOCK_JOB_ERROR", "bad1"))
                .isEqualTo(Map.of("device", "bad1", "operation", "read", "action", "report"));
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "bad1")).containsEntry("error", "Input/output error");
        f.awaitNoJobs();
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("count", 0L);
        assertThat(sha("bad1", "bitmap1")).isEqualTo(sha1);
    }

    @Test
    void groupedFailureCancelsTheOtherAndRestoresBothBitmaps() throws Exception {
        FaultyDisk bad = f.addFaulty("bad1", "drive1");
        qmp.ok("transaction", fullWithBitmap("drive0", "bitmap0", "full0.qcow2"));
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        qmp.ok("block-dirty-bitmap-add", args("node", "bad1", "name", "bitmap1"));
        f.randomWrites("drive0", 61, 20);
        f.write("bad1", "write -P 0x5a 1M 1M");
        String sha0 = sha("drive0", "bitmap0");
        String sha1 = sha("bad1", "bitmap1");
        f.createQcow2("d0.qcow2", "full0.qcow2");
        f.createQcow2("d1.qcow2", null);
        bad.failReads(5);
        qmp.ok(
                "transaction",
                args(
                        "actions",
                        List.of(
                                action("drive-backup", incremental("drive0", "bitmap0", "d0.qcow2", "speed", 1L)),
                                action("drive-backup", incremental("bad1", "bitmap1", "d1.qcow2"))),
                        "properties",
                        args("completion-mode", "grouped")));
        f.awaitNoJobs();
        // as the seed shows: the failing (newest) job reports first, then the other is cancelled
        assertThat(f.events.stream()
                        .filter(e -> !"JOB_STATUS_CHANGE".equals(e.get("event")))
                        .map(e -> e.get("event") + " " + ((Map<?, ?>) e.get("data")).get("device"))
                        .toList())
                .containsExactly("BLOCK_JOB_ERROR bad1", "BLOCK_JOB_COMPLETED bad1", "BLOCK_JOB_CANCELLED drive0");
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "bad1")).containsEntry("error", "Input/output error");
        assertThat(sha("drive0", "bitmap0")).isEqualTo(sha0);
        assertThat(sha("bad1", "bitmap1")).isEqualTo(sha1);
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("busy", false);
    }

    @Test
    void aFailedActionLeavesNothingOfTheOthers() throws Exception {
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "bitmap0"));
        f.randomWrites("drive0", 71, 10);
        String sha = sha("drive0", "bitmap0");
        Map<String, Object> r = qmp.execute(
                "transaction",
                args(
                        "actions",
                        List.of(
                                action("block-dirty-bitmap-clear", args("node", "drive0", "name", "bitmap0")),
                                action("block-dirty-bitmap-add", args("node", "drive1", "name", "new")),
                                action(
                                        "drive-backup",
                                        args(
                                                "device",
                                                "drive0",
                                                "target",
                                                dir.resolve("t.qcow2").toString(),
                                                "sync",
                                                "full",
                                                "format",
                                                "qcow2")),
                                action("block-dirty-bitmap-disable", args("node", "drive0", "name", "bitmap0")),
                                action(
                                        "blockdev-backup",
                                        args("device", "drive1", "target", "nowhere", "sync", "full")))));
        assertThat(QmpClient.errorOf(r))
                .isEqualTo("GenericError: Cannot find device='nowhere' nor node-name='nowhere'");
        assertThat(sha("drive0", "bitmap0")).isEqualTo(sha);
        assertThat(f.bitmap("drive0", "bitmap0"))
                .containsEntry("recording", true)
                .containsEntry("busy", false);
        assertThat(QmpClient.errorOf(
                        qmp.execute("x-debug-block-dirty-bitmap-sha256", args("node", "drive1", "name", "new"))))
                .isEqualTo("GenericError: Dirty bitmap 'new' not found");
        assertThat(qmp.ok("query-jobs", null)).isEqualTo(List.of());
        List<Map<String, Object>> events = qmp.events(4, 2000);
        assertThat(events.stream()
                        .map(e -> (Object) ((Map<?, ?>) e.get("data")).get("status"))
                        .toList())
                .containsExactly((Object) "created", "aborting", "concluded", "null");

        assertThat(QmpClient.errorOf(qmp.execute(
                        "transaction",
                        args(
                                "actions",
                                List.of(
                                        action("block-dirty-bitmap-remove", args("node", "drive0", "name", "bitmap0")),
                                        action("abort", Map.of()))))))
                .isEqualTo("GenericError: Transaction aborted using Abort action");
        assertThat(sha("drive0", "bitmap0")).isEqualTo(sha);
        assertThat(Files.exists(dir.resolve("t.qcow2"))).isTrue();
    }

    /**
     * drive-backup creates its target through the block layer, which takes the image lock: a target
     * file another process has open is refused as qemu-storage-daemon 7.2 refuses it (its words,
     * checked by hand: "Failed to get \"write\" lock"), and not touched.
     */
    @Test
    void aTargetFileInUseIsRefusedUnchanged() throws Exception {
        Interop.require("qemu-img", "qemu-io");
        Path t = dir.resolve("busy.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", t.toString(), "1M").assertOk();
        byte[] before = Files.readAllBytes(t);
        try (LockHolder holder = LockHolder.start(t, "qemu-io", "-f", "qcow2", t.toString())) {
            for (String format : List.of("qcow2", "raw")) {
                assertThat(QmpClient.errorOf(qmp.execute(
                                "drive-backup",
                                args("device", "drive0", "target", t.toString(), "sync", "full", "format", format))))
                        .as(format)
                        .isEqualTo("GenericError: Failed to get \"write\" lock");
            }
            assertThat(holder.alive()).isTrue();
        }
        assertThat(Files.readAllBytes(t)).isEqualTo(before);
        assertThat(qmp.ok("query-named-block-nodes", Map.of()).toString()).doesNotContain(t.toString());
    }

    @Test
    void refusalsInQemusWords() throws Exception {
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "b"));
        String t = dir.resolve("t.qcow2").toString();
        Object[][] cases = {
            {
                args("device", "drive0", "target", t, "sync", "incremental"),
                "must provide a valid bitmap name for 'incremental' sync mode"
            },
            {
                args("device", "drive0", "target", t, "sync", "bitmap"),
                "must provide a valid bitmap name for 'bitmap' sync mode"
            },
            {
                args("device", "drive0", "target", t, "sync", "incremental", "bitmap", "b", "bitmap-mode", "never"),
                "Bitmap sync mode must be 'on-success' when using sync mode 'incremental'"
            },
            {
                args("device", "drive0", "target", t, "sync", "full", "bitmap", "x", "bitmap-mode", "always"),
                "Bitmap 'x' could not be found"
            },
            {
                args("device", "drive0", "target", t, "sync", "full", "bitmap", "b"),
                "Bitmap sync mode must be given when providing a bitmap"
            },
            {
                args("device", "drive0", "target", t, "sync", "none", "bitmap", "b", "bitmap-mode", "always"),
                "sync mode 'none' does not produce meaningful bitmap outputs"
            },
            {
                args("device", "drive0", "target", t, "sync", "full", "bitmap", "b", "bitmap-mode", "never"),
                "Bitmap sync mode 'never' has no meaningful effect when combined with sync mode 'full'"
            },
            {
                args("device", "drive0", "target", t, "sync", "full", "bitmap-mode", "always"),
                "Cannot specify bitmap sync mode without a bitmap"
            },
            {args("device", "nope", "target", t, "sync", "full"), "Cannot find device='nope' nor node-name='nope'"},
            {args("device", "drive0", "target", t, "sync", "full", "job-id", "1x"), "Invalid job ID '1x'"},
            {
                args("device", "drive0", "target", t, "sync", "full", "speed", -1),
                "Parameter 'speed' expects a non-negative value"
            },
        };
        for (Object[] c : cases) {
            @SuppressWarnings("unchecked")
            Map<String, Object> a = (Map<String, Object>) c[0];
            assertThat(QmpClient.errorOf(qmp.execute("drive-backup", a)))
                    .as("%s", a)
                    .isEqualTo("GenericError: " + c[1]);
            assertThat(f.bitmap("drive0", "b")).containsEntry("busy", false);
        }
        assertThat(QmpClient.errorOf(
                        qmp.execute("blockdev-backup", args("device", "drive0", "target", "drive0", "sync", "full"))))
                .isEqualTo("GenericError: Source and target cannot be the same");
        assertThat(QmpClient.errorOf(qmp.execute(
                        "transaction",
                        args(
                                "actions",
                                List.of(action("block-dirty-bitmap-add", args("node", "drive0", "name", "c"))),
                                "properties",
                                args("completion-mode", "grouped")))))
                .isEqualTo(
                        "GenericError: Action 'block-dirty-bitmap-add' does not support Transaction property completion-mode = grouped");
        f.createQcow2("t0.qcow2", null);
        qmp.ok(
                "blockdev-add",
                args(
                        "driver",
                        "qcow2",
                        "node-name",
                        "tgt",
                        "file",
                        args(
                                "driver",
                                "file",
                                "filename",
                                dir.resolve("t0.qcow2").toString())));
        qmp.ok("blockdev-backup", args("device", "drive0", "target", "tgt", "sync", "full", "speed", 1));
        assertThat(QmpClient.errorOf(qmp.execute(
                        "blockdev-backup",
                        args("device", "drive1", "target", "tgt", "sync", "full", "job-id", "other"))))
                .isEqualTo("GenericError: Node 'tgt' is busy: block device is in use by block job: backup");
        assertThat(QmpClient.errorOf(qmp.execute(
                        "drive-backup", args("device", "tgt", "target", t, "sync", "full", "job-id", "other"))))
                .isEqualTo("GenericError: Node 'tgt' is busy: block device is in use by block job: backup");
        assertThat(QmpClient.errorOf(qmp.execute("blockdev-del", args("node-name", "tgt"))))
                .isEqualTo("GenericError: Node 'tgt' is busy: block device is in use by block job: backup");
        assertThat(QmpClient.errorOf(qmp.execute("blockdev-del", args("node-name", "drive0"))))
                .isEqualTo("GenericError: Block device drive0 is in use");
        assertThat(QmpClient.errorOf(qmp.execute("job-dismiss", args("id", "drive0"))))
                .isEqualTo("GenericError: Job 'drive0' in state 'running' cannot accept command verb 'dismiss'");
        assertThat(QmpClient.errorOf(qmp.execute("block-job-pause", args("device", "x"))))
                .isEqualTo("DeviceNotActive: Block job 'x' not found");
        assertThat(QmpClient.errorOf(qmp.execute("job-pause", args("id", "x"))))
                .isEqualTo("GenericError: Job not found");
        qmp.ok("block-job-pause", args("device", "drive0"));
        assertThat(QmpClient.errorOf(qmp.execute("block-job-cancel", args("device", "drive0"))))
                .isEqualTo("GenericError: The block job for device 'drive0' is currently paused");
        qmp.ok("block-job-cancel", args("device", "drive0", "force", true));
        f.awaitEvent("BLOCK_JOB_CANCELLED", "drive0");
    }
}
