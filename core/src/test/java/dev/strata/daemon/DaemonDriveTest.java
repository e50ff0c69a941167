package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static dev.strata.daemon.BackupFixture.assertSame;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.testing.Interop;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Drives ({@code --drive id=drive0,...,node-name=node0}) and a backup's filter node, on an
 * in-process daemon: what a user of a QEMU VM's drives and filter-node-name sees. Texts follow
 * qemu-system-x86_64 7.2 (QsdDifferentialTest's drives.qmp compares them line by line).
 */
class DaemonDriveTest {
    @TempDir
    Path dir;

    BackupFixture f;

    @BeforeEach
    void start() throws Exception {
        Interop.require("qemu-img");
        f = new BackupFixture(dir, true);
    }

    @AfterEach
    void stop() throws IOException {
        if (f != null) {
            f.close();
        }
    }

    private String hmp(String line) throws IOException {
        return (String) f.qmp.ok("human-monitor-command", args("command-line", line));
    }

    @SuppressWarnings("unchecked")
    private List<Map<String, Object>> namedNodes() throws IOException {
        return (List<Map<String, Object>>) f.qmp.ok("query-named-block-nodes", args("flat", true));
    }

    @SuppressWarnings("unchecked")
    private List<String> devices() throws IOException {
        return ((List<Map<String, Object>>) f.qmp.ok("query-block", null))
                .stream().map(b -> (String) b.get("device")).toList();
    }

    @Test
    void aDrivesIdAndItsNodesNameAreTheSameDisk() throws Exception {
        assertThat(devices()).containsExactly("drive0", "drive1");
        f.qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "a"));
        f.qmp.ok("block-dirty-bitmap-add", args("node", "node0", "name", "b"));
        f.write("drive0", "write -P 0x5a 0 64k");
        f.write("node0", "write -P 0x5b 1M 64k");
        assertThat(f.bitmap("drive0", "a")).containsEntry("count", 128L * 1024);
        assertThat(f.bitmap("drive0", "b")).containsEntry("count", 128L * 1024);
        assertThat(f.qmp.ok("x-debug-block-dirty-bitmap-sha256", args("node", "drive0", "name", "a")))
                .isEqualTo(f.qmp.ok("x-debug-block-dirty-bitmap-sha256", args("node", "node0", "name", "b")));
        assertThat(f.qmp.error("block-dirty-bitmap-add", args("node", "drive9", "name", "c")))
                .isEqualTo("GenericError: Cannot find device='drive9' nor node-name='drive9'");
        assertThat(f.qmp.error(
                        "blockdev-add",
                        args("driver", "raw", "node-name", "drive1", "file", args("driver", "file", "filename", "x"))))
                .isEqualTo("GenericError: node-name=drive1 is conflicting with a device id");
        assertThat(f.qmp.error("blockdev-del", args("node-name", "node0")))
                .isEqualTo("GenericError: Node node0 is in use");
    }

    @Test
    void aBackupOfADrivesNodeIsNamedAfterTheDrive() throws Exception {
        f.qmp.ok(
                "drive-backup",
                args(
                        "device",
                        "node1",
                        "target",
                        dir.resolve("b.qcow2").toString(),
                        "format",
                        "qcow2",
                        "sync",
                        "full"));
        Map<String, Object> done = f.awaitEvent("BLOCK_JOB_COMPLETED", "drive1");
        assertThat(done).doesNotContainKey("error");
        assertSame(dir.resolve("d1.raw"), dir.resolve("b.qcow2"));
    }

    /**
     * Writes through the filter node of a running backup reach the disk with copy-before-write:
     * the backup still equals the disk when the job started, and the bitmap records the writes.
     */
    @Test
    void writesThroughTheFilterNodeAreCopiedBeforeAndTracked() throws Exception {
        f.qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "bitmap0"));
        Path t0 = f.snapshot("drive0", "t0.raw");
        Path target = dir.resolve("full.qcow2");
        f.qmp.ok(
                "drive-backup",
                args(
                        "device", "drive0",
                        "target", target.toString(),
                        "format", "qcow2",
                        "sync", "full",
                        "speed", 1 << 20,
                        "filter-node-name", "cbw0"));
        Map<String, Object> cbw = namedNodes().stream()
                .filter(n -> n.get("node-name").equals("cbw0"))
                .findFirst()
                .orElseThrow();
        assertThat(cbw)
                .containsEntry("drv", "copy-before-write")
                .containsEntry("file", dir.resolve("d0.raw").toString());
        assertThat(f.qmp.error("blockdev-del", args("node-name", "cbw0")))
                .isEqualTo("GenericError: Node cbw0 is in use");
        assertThat(hmp("drive_del drive0"))
                .isEqualTo("Node 'drive0' is busy: block device is in use by block job: backup\r\n");

        // the last clusters of the disk: the job, copying from the start at 1 MiB/s, has not got there
        for (int i = 0; i < 8; i++) {
            long off = BackupFixture.SIZE - (i + 1) * (1 << 20);
            assertThat(hmp("qemu-io cbw0 \"write -P 0x" + Integer.toHexString(0x70 + i) + " " + off + " 64k\""))
                    .isEmpty();
        }
        assertThat(hmp("qemu-io drive0 \"read -P 0x70 " + (BackupFixture.SIZE - (1 << 20)) + " 64k\""))
                .isEmpty();
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("count", 8L * 64 * 1024);
        f.qmp.ok("block-job-set-speed", args("device", "drive0", "speed", 0));
        Map<String, Object> done = f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        assertThat(done).doesNotContainKey("error");
        assertSame(t0, target);
        assertThat(namedNodes()).noneMatch(n -> n.get("drv").equals("copy-before-write"));
    }

    @Test
    void aFilterWithoutANameGetsAnAutomaticOne() throws Exception {
        f.qmp.ok(
                "drive-backup",
                args(
                        "device", "drive1",
                        "target", dir.resolve("f.qcow2").toString(),
                        "format", "qcow2",
                        "sync", "full",
                        "speed", 1 << 20));
        assertThat(namedNodes())
                .filteredOn(n -> n.get("drv").equals("copy-before-write"))
                .singleElement()
                .satisfies(n -> assertThat((String) n.get("node-name")).matches("#block[0-9]+"));
        assertThat(f.qmp.error(
                        "drive-backup",
                        args(
                                "device", "drive0",
                                "target", dir.resolve("g.qcow2").toString(),
                                "format", "qcow2",
                                "sync", "full",
                                "filter-node-name", "node1")))
                .isEqualTo("GenericError: Could not create node: Duplicate nodes with node-name='node1'");
        f.qmp.ok("block-job-cancel", args("device", "drive1"));
        f.awaitEvent("BLOCK_JOB_CANCELLED", "drive1");
        f.awaitNoJobs();
        assertThat(namedNodes()).noneMatch(n -> n.get("drv").equals("copy-before-write"));
    }

    @Test
    void drivesComeAndGoAtRunTime() throws Exception {
        Interop.qemuImg("create", "-q", "-f", "qcow2", dir.resolve("d2.qcow2").toString(), "64M")
                .assertOk();
        assertThat(hmp("drive_add 0 if=none,id=drive2,file=" + dir.resolve("d2.qcow2") + ",format=qcow2"))
                .isEqualTo("OK\r\n");
        assertThat(hmp("drive_add 0 if=none,id=drive2,file=" + dir.resolve("d2.qcow2")))
                .isEqualTo("Duplicate ID 'drive2' for drive\r\n");
        assertThat(devices()).containsExactly("drive0", "drive1", "drive2");
        assertThat(hmp("qemu-io drive2 \"write -P 0x33 0 64k\"")).isEmpty();
        assertThat(hmp("drive_del drive2")).isEmpty();
        assertThat(hmp("drive_del drive2")).isEqualTo("Device 'drive2' not found\r\n");
        assertThat(devices()).containsExactly("drive0", "drive1");
        // closed and unlocked: qemu-img may write it and reads what the drive wrote
        Interop.qemuIo(
                        "-f",
                        "qcow2",
                        "-c",
                        "read -P 0x33 0 64k",
                        "-c",
                        "write 1M 4k",
                        dir.resolve("d2.qcow2").toString())
                .assertOk();
        Interop.Result check = Interop.qemuImg("check", dir.resolve("d2.qcow2").toString());
        assertThat(check.exitCode()).as(check.stdout()).isZero();
    }

    @Test
    void badDriveOptionsAreRefusedAtStartUp() throws IOException {
        Path img = dir.resolve("spare.raw");
        java.nio.file.Files.write(img, new byte[1 << 20]);
        for (var c : Map.of(
                        "id=1x,file=" + img, "Parameter 'id' expects an identifier",
                        "id=d,file=" + dir.resolve("nope.raw"), "Could not open '" + dir.resolve("nope.raw") + "'",
                        "id=d,file=" + img + ",format=raw,cache=weird", "invalid cache option",
                        "id=d,file=" + img + ",format=raw,aio=native", "aio=native was specified, but it requires",
                        "id=d,file=" + img + ",format=raw,bogus=1",
                                "Block format 'raw' does not support the option 'bogus'",
                        "id=d,file=" + img + ",format=raw,readonly=maybe",
                                "Parameter 'read-only' expects 'on' or 'off'")
                .entrySet()) {
            assertThatThrownBy(() -> Daemon.start(List.of(new Daemon.DriveOption(c.getKey())), "test"))
                    .as(c.getKey())
                    .isInstanceOf(Daemon.StartupException.class)
                    .hasMessageStartingWith("--drive " + c.getKey() + ": ")
                    .hasMessageContaining(c.getValue());
        }
    }
}
