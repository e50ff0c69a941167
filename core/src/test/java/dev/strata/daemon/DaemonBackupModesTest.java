package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static dev.strata.daemon.BackupFixture.assertSame;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.json.Json;
import dev.strata.qmp.QmpClient;
import dev.strata.testing.FaultyDisk;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The sync modes other than full and incremental, the bitmap modes never and always, compress. */
class DaemonBackupModesTest {
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

    private String sha(String node, String name) throws IOException {
        @SuppressWarnings("unchecked")
        Map<String, Object> r =
                (Map<String, Object>) qmp.ok("x-debug-block-dirty-bitmap-sha256", args("node", node, "name", name));
        return (String) r.get("sha256");
    }

    @SuppressWarnings("unchecked")
    private long topLayerBytes(Path image) throws Exception {
        Interop.Result r =
                Interop.qemuImg("map", "--output=json", "-U", image.toString()).assertOk();
        long n = 0;
        for (Object o : (List<Object>) Json.parse(r.stdout())) {
            Map<String, Object> m = (Map<String, Object>) o;
            if (((Number) m.get("depth")).longValue() == 0 && Boolean.TRUE.equals(m.get("present"))) {
                n += ((Number) m.get("length")).longValue();
            }
        }
        return n;
    }

    /** sync=top: only what the overlay holds is copied; the new image's backing is the overlay's. */
    @Test
    void topCopiesTheTopLayerOverTheSameBacking() throws Exception {
        Path base = dir.resolve("base.qcow2");
        Path top = dir.resolve("top.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", base.toString(), "64M").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write -P 0x11 0 32M", base.toString())
                .assertOk();
        Interop.qemuImg("create", "-q", "-f", "qcow2", "-b", base.toString(), "-F", "qcow2", top.toString())
                .assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write -P 0x22 1M 3M", "-c", "write -z 8M 1M", top.toString())
                .assertOk();
        qmp.ok(
                "blockdev-add",
                args(
                        "driver",
                        "qcow2",
                        "node-name",
                        "ovl",
                        "file",
                        args("driver", "file", "filename", top.toString())));
        Path out = dir.resolve("out.qcow2");
        qmp.ok("drive-backup", args("device", "ovl", "target", out.toString(), "sync", "top"));
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "ovl"))
                .doesNotContainKey("error")
                .containsEntry("len", 4L << 20);
        Interop.Result info =
                Interop.qemuImg("info", "--output=json", out.toString()).assertOk();
        assertThat(info.stdout()).contains("\"backing-filename\": \"" + base + "\"");
        assertThat(Interop.qemuImg("compare", "-U", top.toString(), out.toString())
                        .exitCode())
                .isZero();
        // 3 MiB of data and the 1 MiB the overlay zeroed over the base's data
        assertThat(topLayerBytes(out)).isEqualTo(4L << 20);
    }

    /** sync=none: only what the guest overwrites reaches the target, as it was before. */
    @Test
    void noneKeepsOnlyWhatIsOverwritten() throws Exception {
        Path s0 = f.snapshot("drive0", "s0.raw");
        f.createQcow2("cbw.qcow2", null);
        qmp.ok(
                "blockdev-add",
                args(
                        "driver",
                        "qcow2",
                        "node-name",
                        "tgt",
                        "backing",
                        "drive0",
                        "file",
                        args(
                                "driver",
                                "file",
                                "filename",
                                dir.resolve("cbw.qcow2").toString())));
        qmp.ok("blockdev-backup", args("device", "drive0", "target", "tgt", "sync", "none"));
        f.randomWrites("drive0", 81, 30);
        qmp.ok("job-cancel", args("id", "drive0"));
        Map<String, Object> c = f.awaitEvent("BLOCK_JOB_CANCELLED", "drive0");
        assertThat((Long) c.get("offset")).isPositive();
        f.awaitNoJobs();
        qmp.ok("blockdev-del", args("node-name", "tgt"));
        assertThat(topLayerBytes(dir.resolve("cbw.qcow2"))).isEqualTo(c.get("offset"));
        // seen over the disk as it was, the copies change nothing: they are the old data
        Interop.qemuImg(
                        "rebase",
                        "-u",
                        "-b",
                        s0.toString(),
                        "-F",
                        "raw",
                        dir.resolve("cbw.qcow2").toString())
                .assertOk();
        assertSame(s0, dir.resolve("cbw.qcow2"));
    }

    @Test
    void bitmapModeNeverLeavesTheBitmapAndAddsNewWrites() throws Exception {
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "b"));
        f.randomWrites("drive0", 91, 20);
        String before = sha("drive0", "b");
        Path s = f.snapshot("drive0", "s.raw");
        f.createQcow2("t.qcow2", null);
        qmp.ok(
                "drive-backup",
                args(
                        "device",
                        "drive0",
                        "target",
                        dir.resolve("t.qcow2").toString(),
                        "sync",
                        "bitmap",
                        "bitmap",
                        "b",
                        "bitmap-mode",
                        "never",
                        "mode",
                        "existing",
                        "format",
                        "qcow2"));
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0")).doesNotContainKey("error");
        f.awaitNoJobs();
        assertThat(sha("drive0", "b")).isEqualTo(before);
        assertThat(s).exists();
    }

    @Test
    void bitmapModeAlwaysOnFailureKeepsWhatWasNotCopied() throws Exception {
        FaultyDisk bad = f.addFaulty("bad", null);
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "b"));
        f.randomWrites("drive0", 92, 20);
        String before = sha("drive0", "b");
        bad.failWrites(5);
        qmp.ok(
                "blockdev-backup",
                args("device", "drive0", "target", "bad", "sync", "bitmap", "bitmap", "b", "bitmap-mode", "always"));
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0")).containsEntry("error", "Input/output error");
        f.awaitNoJobs();
        assertThat(sha("drive0", "b")).isEqualTo(before);
        bad.failWrites(0);
        qmp.ok(
                "blockdev-backup",
                args("device", "drive0", "target", "bad", "sync", "bitmap", "bitmap", "b", "bitmap-mode", "always"));
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0")).doesNotContainKey("error");
        f.awaitNoJobs();
        assertThat(f.bitmap("drive0", "b")).containsEntry("count", 0L);
    }

    @Test
    void compressedFullBackup() throws Exception {
        f.write("drive0", "write -P 0x61 0 16M");
        Path s = f.snapshot("drive0", "s.raw");
        Path out = dir.resolve("c.qcow2");
        qmp.ok(
                "drive-backup",
                args(
                        "device",
                        "drive0",
                        "target",
                        out.toString(),
                        "sync",
                        "full",
                        "format",
                        "qcow2",
                        "compress",
                        true));
        assertThat(f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0")).doesNotContainKey("error");
        f.awaitNoJobs();
        assertSame(s, out);
        assertThat(Interop.qemuImg("check", out.toString()).exitCode()).isZero();
        assertThat(QmpClient.errorOf(qmp.execute(
                        "drive-backup",
                        args(
                                "device",
                                "drive0",
                                "target",
                                dir.resolve("r.raw").toString(),
                                "sync",
                                "full",
                                "compress",
                                true))))
                .isEqualTo("GenericError: Compression is not supported for this drive ");
    }
}
