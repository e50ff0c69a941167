package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * QEMU's current pull-mode fleecing recipe (7.0 and later): a copy-before-write filter over the
 * disk with a temporary target, a snapshot-access node over the filter exported over NBD, and a
 * backup tool reading the export while the guest keeps writing. What the tool reads must be the
 * disk as it was when the filter opened, whichever way the guest's writes reach the disk.
 */
class FleecingTest {
    @TempDir
    Path dir;

    private static final String TARGET = "target";

    private static void addTarget(BackupFixture f, Path image) throws Exception {
        f.qmp.ok(
                "blockdev-add",
                args(
                        "driver",
                        "qcow2",
                        "node-name",
                        TARGET,
                        // discard=unmap as QEMU's recipe: a released cluster is freed in the target
                        "discard",
                        "unmap",
                        "file",
                        args("driver", "file", "filename", image.toString())));
    }

    @Test
    void theExportIsThePointInTimeWhileTheGuestWrites() throws Exception {
        Interop.require("qemu-img", "qemu-io");
        long seed = Long.getLong("strata.seed", System.nanoTime());
        System.out.println("FleecingTest seed " + seed + " (replay with -Dstrata.seed=" + seed + ")");
        try (BackupFixture f = new BackupFixture(dir)) {
            f.createQcow2("fleece.qcow2", null);
            addTarget(f, dir.resolve("fleece.qcow2"));
            f.qmp.ok(
                    "blockdev-add",
                    args("driver", "copy-before-write", "node-name", "cbw", "file", "drive0", "target", TARGET));
            Path atStart = f.snapshot("drive0", "start.raw");
            f.qmp.ok("blockdev-add", args("driver", "snapshot-access", "node-name", "acc", "file", "cbw"));
            Path nbd = dir.resolve("nbd.sock");
            f.startNbd(nbd);
            f.qmp.ok("block-export-add", args("type", "nbd", "id", "e-acc", "node-name", "acc", "name", "acc"));
            f.qmp.ok(
                    "block-export-add",
                    args("type", "nbd", "id", "e-d0", "node-name", "drive0", "name", "drive0", "writable", true));

            // the guest writes three ways while the tool reads: through the disk's own export (past
            // the filter), through the filter node, and through the disk node
            f.write("cbw", "write -P 0x5a 0 1M");
            Interop.qemuIo("-f", "raw", "-c", "write -P 0x6b 8M 4M", "nbd+unix:///drive0?socket=" + nbd)
                    .assertOk();
            AtomicReference<Throwable> writerFailure = new AtomicReference<>();
            Thread writer = Thread.ofPlatform().start(() -> {
                try {
                    f.randomWrites("drive0", seed, 200);
                } catch (Throwable t) {
                    writerFailure.set(t);
                }
            });
            Path pulled = dir.resolve("pulled.raw");
            Interop.Result copy = Interop.qemuImg(
                    "convert", "-f", "raw", "-O", "raw", "nbd+unix:///acc?socket=" + nbd, pulled.toString());
            writer.join();
            assertThat(writerFailure.get()).as("guest writes").isNull();
            copy.assertOk();
            BackupFixture.assertSame(atStart, pulled, "raw");
            // and the disk did change
            assertThat(Interop.qemuImg(
                                    "compare",
                                    "-f",
                                    "raw",
                                    "-F",
                                    "raw",
                                    atStart.toString(),
                                    dir.resolve("d0.raw").toString())
                            .exitCode())
                    .isEqualTo(1);

            // the filter is in use while the snapshot is; then both go
            assertThat(QmpClient.errorOf(f.qmp.execute("blockdev-del", args("node-name", "cbw"))))
                    .isEqualTo("GenericError: Block device cbw is in use");
            f.qmp.ok("block-export-del", args("id", "e-acc"));
            f.qmp.ok("block-export-del", args("id", "e-d0"));
            f.qmp.ok("blockdev-del", args("node-name", "acc"));
            f.qmp.ok("blockdev-del", args("node-name", "cbw"));
            f.qmp.ok("blockdev-del", args("node-name", TARGET));
            // writes after the filter is gone save nothing any more
            f.write("drive0", "write -P 0x7c 0 64k");
        }
    }

    @Test
    void aBitmapLimitsTheSnapshotAndADiscardReleasesIt() throws Exception {
        Interop.require("qemu-img", "qemu-io");
        try (BackupFixture f = new BackupFixture(dir)) {
            f.qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "b0"));
            f.write("drive0", "write -P 0x21 4M 1M");
            Path atStart = f.snapshot("drive0", "start.raw");
            f.createQcow2("fleece.qcow2", null);
            addTarget(f, dir.resolve("fleece.qcow2"));
            f.qmp.ok(
                    "blockdev-add",
                    args(
                            "driver",
                            "copy-before-write",
                            "node-name",
                            "cbw",
                            "file",
                            "drive0",
                            "target",
                            TARGET,
                            "bitmap",
                            args("node", "drive0", "name", "b0")));
            assertThat(QmpClient.errorOf(f.qmp.execute(
                            "blockdev-add",
                            args(
                                    "driver",
                                    "copy-before-write",
                                    "node-name",
                                    "cbw2",
                                    "file",
                                    "drive0",
                                    "target",
                                    TARGET,
                                    "bitmap",
                                    args("node", "drive0", "name", "nope")))))
                    .isEqualTo("GenericError: Dirty bitmap 'nope' not found");
            // discard=unmap: without it a node ignores discards (as in QEMU), and the release below
            // would never reach the filter
            f.qmp.ok(
                    "blockdev-add",
                    args("driver", "snapshot-access", "node-name", "acc", "file", "cbw", "discard", "unmap"));
            Path nbd = dir.resolve("nbd.sock");
            f.startNbd(nbd);
            f.qmp.ok(
                    "block-export-add",
                    args("type", "nbd", "id", "e-acc", "node-name", "acc", "name", "acc", "writable", true));
            String uri = "nbd+unix:///acc?socket=" + nbd;
            f.write("drive0", "write -P 0x43 4M 2M");

            // the dirty megabyte reads as it was; a clean part of the disk is not in the snapshot: the
            // node refuses it with EACCES, which NBD has no code for (QEMU's server sends EINVAL too)
            Interop.Result dirty = Interop.qemuIo("-f", "raw", "-c", "read -P 0x21 4M 1M", uri);
            assertThat(dirty.stdout()).contains("read 1048576/1048576").doesNotContain("Pattern verification failed");
            Interop.Result clean = Interop.qemuIo("-f", "raw", "-c", "read 0 64k", uri);
            assertThat(clean.stdout() + clean.stderr()).contains("read failed: Invalid argument");
            assertThat((String) f.qmp.ok("human-monitor-command", args("command-line", "qemu-io acc \"read 0 64k\"")))
                    .contains("Permission denied");

            // the tool is done with the first half: it is released
            Interop.qemuIo("-f", "raw", "-c", "discard 4M 512k", uri).assertOk();
            Interop.Result released = Interop.qemuIo("-f", "raw", "-c", "read 4M 64k", uri);
            assertThat(released.stdout() + released.stderr()).contains("read failed: Invalid argument");
            Interop.Result kept = Interop.qemuIo("-f", "raw", "-c", "read -P 0x21 4608k 512k", uri);
            assertThat(kept.stdout()).contains("read 524288/524288").doesNotContain("Pattern verification failed");
            assertThat(atStart).exists();
        }
    }

    @Test
    void aFailedSaveFailsTheGuestWriteOrBreaksTheSnapshotAsAsked() throws Exception {
        Interop.require("qemu-img", "qemu-io");
        for (String mode : List.of("break-guest-write", "break-snapshot")) {
            Path sub = dir.resolve(mode);
            java.nio.file.Files.createDirectories(sub);
            try (BackupFixture f = new BackupFixture(sub)) {
                f.createQcow2("fleece.qcow2", null);
                Map<String, Object> failing = args(
                        "driver",
                        "qcow2",
                        "node-name",
                        TARGET,
                        "file",
                        args(
                                "driver",
                                "blkdebug",
                                "inject-error",
                                List.of(args("event", "write_aio", "errno", 5)),
                                "image",
                                args(
                                        "driver",
                                        "file",
                                        "filename",
                                        sub.resolve("fleece.qcow2").toString())));
                f.qmp.ok("blockdev-add", failing);
                f.qmp.ok(
                        "blockdev-add",
                        args(
                                "driver",
                                "copy-before-write",
                                "node-name",
                                "cbw",
                                "file",
                                "drive0",
                                "target",
                                TARGET,
                                "on-cbw-error",
                                mode,
                                "cbw-timeout",
                                30));
                f.qmp.ok("blockdev-add", args("driver", "snapshot-access", "node-name", "acc", "file", "cbw"));
                Object reply = f.qmp.ok(
                        "human-monitor-command", args("command-line", "qemu-io drive0 \"write -P 0x11 0 64k\""));
                Object read = f.qmp.ok("human-monitor-command", args("command-line", "qemu-io acc \"read 1M 64k\""));
                if (mode.equals("break-guest-write")) {
                    assertThat((String) reply).as(mode).contains("Input/output error");
                    assertThat((String) read).as(mode).doesNotContain("Permission denied");
                } else {
                    assertThat((String) reply).as(mode).isEmpty();
                    assertThat((String) read).as(mode).contains("Permission denied");
                }
            }
        }
    }

    /**
     * Push-mode fleecing with discard-source (QEMU 9.1): a backup from the snapshot releases each
     * saved cluster once copied, so the temporary target holds nothing afterwards, and the backup
     * is still the point in time.
     */
    @Test
    void aBackupFromTheSnapshotWithDiscardSourceReleasesWhatItCopied() throws Exception {
        Interop.require("qemu-img", "qemu-io");
        try (BackupFixture f = new BackupFixture(dir)) {
            f.createQcow2("fleece.qcow2", null);
            addTarget(f, dir.resolve("fleece.qcow2"));
            f.qmp.ok(
                    "blockdev-add",
                    args("driver", "copy-before-write", "node-name", "cbw", "file", "drive0", "target", TARGET));
            Path atStart = f.snapshot("drive0", "start.raw");
            f.qmp.ok(
                    "blockdev-add",
                    args("driver", "snapshot-access", "node-name", "acc", "file", "cbw", "discard", "unmap"));
            // the guest overwrites the whole disk: every cluster is saved to the temporary target
            f.write("drive0", "write -P 0x5a 0 " + BackupFixture.SIZE);
            f.createQcow2("backup.qcow2", null);
            f.qmp.ok(
                    "blockdev-add",
                    args(
                            "driver",
                            "qcow2",
                            "node-name",
                            "backup",
                            "file",
                            args(
                                    "driver",
                                    "file",
                                    "filename",
                                    dir.resolve("backup.qcow2").toString())));
            long savedBefore = java.nio.file.Files.size(dir.resolve("fleece.qcow2"));
            f.qmp.ok(
                    "blockdev-backup",
                    args(
                            "job-id",
                            "pull",
                            "device",
                            "acc",
                            "target",
                            "backup",
                            "sync",
                            "full",
                            "discard-source",
                            true));
            f.awaitEvent("BLOCK_JOB_COMPLETED", "pull");
            f.awaitNoJobs();
            f.qmp.ok("blockdev-del", args("node-name", "backup"));
            BackupFixture.assertSame(atStart, dir.resolve("backup.qcow2"));
            Object read = f.qmp.ok("human-monitor-command", args("command-line", "qemu-io acc \"read 0 64k\""));
            assertThat((String) read)
                    .as("the snapshot let go of what was copied")
                    .contains("Permission denied");
            Interop.Result map = Interop.qemuImg(
                    "map", "--output=json", "-U", dir.resolve("fleece.qcow2").toString());
            assertThat(map.stdout())
                    .as("the temporary target holds no data any more")
                    .doesNotContain("\"data\": true");
            assertThat(savedBefore).isGreaterThan(BackupFixture.SIZE / 2);
        }
    }
}
