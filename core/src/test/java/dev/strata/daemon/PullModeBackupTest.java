package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.testing.Interop;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pull-mode incremental backup, as libvirt does it: a point-in-time view of the disk (a fleecing
 * overlay fed by a sync=none backup's copy-before-write) exported over NBD together with the frozen
 * bitmap; the backup tool reads only the dirty extents ({@code qemu:dirty-bitmap:bitmap0}) into an
 * overlay of the last full backup, while the guest keeps writing. The result must equal the disk
 * at that point in time.
 */
class PullModeBackupTest {
    @TempDir
    Path dir;

    /** bitmap0's count from query-named-block-nodes (drive0 is the fleecing node's backing now). */
    @SuppressWarnings("unchecked")
    private static long bitmapCount(BackupFixture f) throws Exception {
        for (Object o : (List<Object>) f.qmp.ok("query-named-block-nodes", null)) {
            Map<String, Object> node = (Map<String, Object>) o;
            if ("drive0".equals(node.get("node-name"))) {
                for (Object b : (List<Object>) node.getOrDefault("dirty-bitmaps", List.of())) {
                    Map<String, Object> bitmap = (Map<String, Object>) b;
                    if ("bitmap0".equals(bitmap.get("name"))) {
                        return ((Number) bitmap.get("count")).longValue();
                    }
                }
            }
        }
        throw new AssertionError("no bitmap0 on drive0");
    }

    @Test
    void dirtyExtentsReadFromAFleecingExportMakeAnExactIncrementalBackup() throws Exception {
        Interop.require("qemu-img");
        Interop.require("nbdinfo");
        try (BackupFixture f = new BackupFixture(dir)) {
            // t0: the full backup and the bitmap that starts with it
            f.qmp.ok("transaction", BackupFixture.bitmapAndFullBackup(dir.resolve("full.qcow2")));
            f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
            f.randomWrites("drive0", 7, 24);

            // t1: the fleecing view and the frozen bitmap, in one transaction
            f.createQcow2("fleece.qcow2", null);
            f.qmp.ok(
                    "blockdev-add",
                    args(
                            "driver",
                            "qcow2",
                            "node-name",
                            "fleece",
                            "file",
                            args(
                                    "driver",
                                    "file",
                                    "filename",
                                    dir.resolve("fleece.qcow2").toString()),
                            "backing",
                            "drive0"));
            f.qmp.ok(
                    "transaction",
                    args(
                            "actions",
                            List.of(
                                    args(
                                            "type",
                                            "block-dirty-bitmap-disable",
                                            "data",
                                            args("node", "drive0", "name", "bitmap0")),
                                    args(
                                            "type",
                                            "blockdev-backup",
                                            "data",
                                            args(
                                                    "job-id",
                                                    "fleecing",
                                                    "device",
                                                    "drive0",
                                                    "target",
                                                    "fleece",
                                                    "sync",
                                                    "none")))));
            Path atT1 = f.snapshot("drive0", "t1.raw");
            long dirty = bitmapCount(f);
            assertThat(dirty).isPositive();
            Path nbd = dir.resolve("nbd.sock");
            f.startNbd(nbd);
            f.qmp.ok(
                    "block-export-add",
                    args(
                            "type",
                            "nbd",
                            "id",
                            "exp0",
                            "node-name",
                            "fleece",
                            "name",
                            "fleece",
                            "bitmaps",
                            List.of("bitmap0")));

            // the guest goes on writing, over the whole disk; the export keeps showing t1
            f.write("drive0", "write -P 0x5a 0 " + BackupFixture.SIZE);

            // the backup tool
            String uri = "nbd+unix:///fleece?socket=" + nbd;
            Interop.Result map = Interop.run("nbdinfo", "--json", "--map=qemu:dirty-bitmap:bitmap0", uri);
            map.assertOk();
            f.createQcow2("inc.qcow2", "full.qcow2");
            long copied = 0;
            for (JsonNode e : new ObjectMapper().readTree(map.stdout())) {
                if ((e.get("type").asInt() & 1) == 0) {
                    continue;
                }
                long offset = e.get("offset").asLong();
                long length = e.get("length").asLong();
                String window = "driver=raw,offset=" + offset + ",size=" + length;
                Interop.qemuImg(
                                "convert",
                                "-n",
                                "--image-opts",
                                "--target-image-opts",
                                window + ",file.driver=nbd,file.server.type=unix,file.server.path=" + nbd
                                        + ",file.export=fleece",
                                window + ",file.driver=qcow2,file.file.driver=file,file.file.filename="
                                        + dir.resolve("inc.qcow2"))
                        .assertOk();
                copied += length;
            }
            assertThat(copied).as("bytes read: exactly the dirty extents").isEqualTo(dirty);
            BackupFixture.assertSame(atT1, dir.resolve("inc.qcow2"));
            assertThat(Files.size(dir.resolve("inc.qcow2")))
                    .as("the overlay holds the changed clusters only")
                    .isLessThan(dirty + (2L << 20));

            f.qmp.ok("block-export-del", args("id", "exp0"));
            f.qmp.ok("block-job-cancel", args("device", "fleecing"));
            f.awaitNoJobs();
            f.qmp.ok("blockdev-del", args("node-name", "fleece"));
        }
    }
}
