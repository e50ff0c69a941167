package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.assertSame;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The seed's incremental backup requests byte for byte, against a {@code strata daemon} process
 * whose working directory holds the images, so the seed's relative file names ("incremental.0.img")
 * mean what they say. Only the first full backup's "/path/to/" is dropped (that directory does
 * not exist here).
 */
class SeedVerbatimIT {
    @TempDir
    Path dir;

    private Process process;

    @AfterEach
    void stop() throws InterruptedException {
        if (process != null && process.isAlive()) {
            process.destroyForcibly();
            process.waitFor(10, TimeUnit.SECONDS);
        }
    }

    private Map<String, Object> send(QmpClient c, String request) throws Exception {
        c.sendRaw(request + "\n");
        return c.readReply();
    }

    private static void awaitCompleted(QmpClient c) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            for (Map<String, Object> e : c.events(1, 200)) {
                if ("BLOCK_JOB_COMPLETED".equals(e.get("event"))) {
                    assertThat(((Map<?, ?>) e.get("data")).containsKey("error"))
                            .as("%s", e)
                            .isFalse();
                    return;
                }
            }
        }
        throw new AssertionError("no BLOCK_JOB_COMPLETED within 30 s");
    }

    private Path snapshot(String name) throws Exception {
        Path p = dir.resolve(name);
        Files.copy(dir.resolve("d0.raw"), p);
        return p;
    }

    private void write(QmpClient c, String command) throws Exception {
        assertThat(c.ok("human-monitor-command", Map.of("command-line", "qemu-io drive0 \"" + command + "\"")))
                .isEqualTo("");
    }

    @Test
    void theSeedsRequestsAsPrinted() throws Exception {
        Interop.require("qemu-img");
        BackupFixture.fill(dir.resolve("d0.raw"), 7);
        String jar = Path.of(System.getProperty("strata.jar", "target/strata.jar"))
                .toAbsolutePath()
                .toString();
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(
                java,
                "--enable-native-access=ALL-UNNAMED",
                "-XX:TieredStopAtLevel=1",
                "-jar",
                jar,
                "daemon",
                "--blockdev",
                "driver=raw,node-name=drive0,file.driver=file,file.filename=d0.raw",
                "--qmp",
                "unix:qmp.sock,server=on,wait=off"));
        process = new ProcessBuilder(cmd)
                .directory(dir.toFile())
                .redirectOutput(dir.resolve("out.log").toFile())
                .redirectError(dir.resolve("err.log").toFile())
                .start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(dir.resolve("qmp.sock"))) {
            assertThat(process.isAlive())
                    .as("daemon died: %s", Files.readString(dir.resolve("err.log")))
                    .isTrue();
            assertThat(System.nanoTime()).isLessThan(deadline);
            Thread.sleep(5);
        }
        List<String> seed = SeedBackupReplayTest.seedRequests();
        try (QmpClient c = QmpClient.connect(dir.resolve("qmp.sock")).negotiate()) {
            Path s0 = snapshot("s0.raw");
            assertThat(send(c, seed.get(4).replace("/path/to/", ""))).isEqualTo(Map.of("return", Map.of()));
            awaitCompleted(c);
            assertSame(s0, dir.resolve("full_backup.img"));

            write(c, "write -P 0x61 0 64k");
            write(c, "write -P 0x62 10M 300k");
            Path s1 = snapshot("s1.raw");
            Interop.run(List.of(
                            "sh",
                            "-c",
                            "cd " + dir
                                    + " && qemu-img create -q -f qcow2 incremental.0.img -b full_backup.img -F qcow2"))
                    .assertOk();
            assertThat(send(c, seed.get(6))).isEqualTo(Map.of("return", Map.of()));
            awaitCompleted(c);
            assertSame(s1, dir.resolve("incremental.0.img"));

            write(c, "write -P 0x63 20M 1M");
            Path s2 = snapshot("s2.raw");
            Interop.run(
                            List.of(
                                    "sh",
                                    "-c",
                                    "cd " + dir
                                            + " && qemu-img create -q -f qcow2 incremental.1.img -b incremental.0.img -F qcow2"))
                    .assertOk();
            assertThat(send(c, seed.get(7))).isEqualTo(Map.of("return", Map.of()));
            awaitCompleted(c);
            assertSame(s2, dir.resolve("incremental.1.img"));
            c.ok("quit", null);
        }
        assertThat(process.waitFor(10, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).isZero();
    }
}
