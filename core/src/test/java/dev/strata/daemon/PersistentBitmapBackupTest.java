package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The workflow persistent bitmaps exist for: a bitmap made with the full backup survives the
 * daemon's restart, and the incremental backup taken by the next daemon holds exactly the writes
 * made before the restart. Two daemon processes' worth of state, one image, checked with
 * qemu-img compare and map.
 */
class PersistentBitmapBackupTest {
    private static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    private Daemon start() throws Exception {
        Path socket = dir.resolve("qmp.sock");
        Files.deleteIfExists(socket);
        return Daemon.start(
                List.of(
                        new Daemon.Blockdev("driver=qcow2,node-name=drive0,file.driver=file,file.filename="
                                + dir.resolve("disk.qcow2")),
                        new Daemon.QmpSocket("unix:" + socket + ",server=on,wait=off")),
                "test");
    }

    private static void write(QmpClient q, String command) throws Exception {
        assertThat(q.ok("human-monitor-command", args("command-line", "qemu-io drive0 \"" + command + "\"")))
                .as(command)
                .isEqualTo("");
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> awaitCompleted(QmpClient q) throws Exception {
        List<Map<String, Object>> seen = new ArrayList<>();
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (System.nanoTime() < deadline) {
            for (Map<String, Object> e : q.events(1, 100)) {
                if ("BLOCK_JOB_COMPLETED".equals(e.get("event"))) {
                    return (Map<String, Object>) e.get("data");
                }
                seen.add(e);
            }
        }
        throw new AssertionError("no BLOCK_JOB_COMPLETED within 30 s; saw " + seen);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> bitmap(QmpClient q, String name) throws Exception {
        for (Object o : (List<Object>) q.ok("query-named-block-nodes", null)) {
            Map<String, Object> node = (Map<String, Object>) o;
            if ("drive0".equals(node.get("node-name"))) {
                for (Object b : (List<Object>) node.getOrDefault("dirty-bitmaps", List.of())) {
                    if (name.equals(((Map<String, Object>) b).get("name"))) {
                        return (Map<String, Object>) b;
                    }
                }
            }
        }
        throw new AssertionError("no bitmap " + name);
    }

    @Test
    void anIncrementalAfterARestartHoldsTheWritesMadeBeforeIt() throws Exception {
        Interop.require("qemu-img");
        Path disk = dir.resolve("disk.qcow2");
        Path full = dir.resolve("full.qcow2");
        Path inc = dir.resolve("inc0.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", disk.toString(), "64M").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write -P 1 0 32M", disk.toString()).assertOk();

        Daemon first = start();
        try (QmpClient q = QmpClient.connect(dir.resolve("qmp.sock")).negotiate()) {
            q.ok(
                    "transaction",
                    args(
                            "actions",
                            List.of(
                                    args(
                                            "type",
                                            "block-dirty-bitmap-add",
                                            "data",
                                            args("node", "drive0", "name", "bitmap0", "persistent", true)),
                                    args(
                                            "type",
                                            "drive-backup",
                                            "data",
                                            args(
                                                    "device",
                                                    "drive0",
                                                    "target",
                                                    full.toString(),
                                                    "sync",
                                                    "full",
                                                    "format",
                                                    "qcow2")))));
            assertThat(awaitCompleted(q)).doesNotContainKey("error");
            write(q, "write -P 2 1M 64k");
            write(q, "write -P 3 40M 128k");
            write(q, "write -z 8M 64k");
            assertThat(bitmap(q, "bitmap0")).containsEntry("count", 256L * 1024).containsEntry("persistent", true);
            assertThat(q.ok("quit", null)).isEqualTo(Map.of());
        } finally {
            first.shutdown();
        }
        Path snapshot = dir.resolve("snapshot.raw");
        Interop.qemuImg("convert", "-O", "raw", disk.toString(), snapshot.toString())
                .assertOk();

        Daemon second = start();
        try (QmpClient q = QmpClient.connect(dir.resolve("qmp.sock")).negotiate()) {
            assertThat(bitmap(q, "bitmap0"))
                    .as("loaded from the image")
                    .containsEntry("count", 256L * 1024)
                    .containsEntry("recording", true)
                    .doesNotContainKey("inconsistent");
            Interop.qemuImg("create", "-q", "-f", "qcow2", "-b", full.toString(), "-F", "qcow2", inc.toString())
                    .assertOk();
            q.ok(
                    "drive-backup",
                    args(
                            "device",
                            "drive0",
                            "bitmap",
                            "bitmap0",
                            "sync",
                            "incremental",
                            "target",
                            inc.toString(),
                            "mode",
                            "existing",
                            "format",
                            "qcow2"));
            assertThat(awaitCompleted(q)).doesNotContainKey("error");
            assertThat(bitmap(q, "bitmap0").get("count")).isEqualTo(0L);
            assertThat(q.ok("quit", null)).isEqualTo(Map.of());
        } finally {
            second.shutdown();
        }
        assertThat(Interop.qemuImg("compare", "-f", "qcow2", "-F", "raw", inc.toString(), snapshot.toString())
                        .exitCode())
                .as("the incremental over the full equals the disk before the restart")
                .isZero();
        String map = Interop.qemuImg("map", "--output=json", inc.toString())
                .assertOk()
                .stdout();
        long own = 0;
        for (String line : map.split("\n")) {
            if (line.contains("\"depth\": 0") && !line.contains("\"depth\": 0, \"present\": false")) {
                own += Long.parseLong(line.replaceAll(".*\"length\": (\\d+).*", "$1"));
            }
        }
        assertThat(own)
                .as("the incremental holds the three written clusters and nothing else")
                .isEqualTo(256L * 1024);
        assertThat(Interop.qemuImg("info", disk.toString()).stdout())
                .contains("name: bitmap0")
                .doesNotContain("in-use");
    }
}
