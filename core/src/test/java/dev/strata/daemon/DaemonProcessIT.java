package dev.strata.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code strata daemon} as a real process from the shaded jar: started with qemu-storage-daemon's
 * options, driven over its QMP socket (guest writes through human-monitor-command), ended by
 * SIGTERM, SIGINT or quit, with the image checked by QEMU's own qemu-io afterwards.
 */
class DaemonProcessIT {
    private static final long MiB = 1 << 20;

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

    private Process start(List<String> args) throws IOException {
        String jar = System.getProperty("strata.jar", "target/strata.jar");
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(
                List.of(java, "--enable-native-access=ALL-UNNAMED", "-XX:TieredStopAtLevel=1", "-jar", jar, "daemon"));
        cmd.addAll(args);
        process = new ProcessBuilder(cmd)
                .redirectOutput(dir.resolve("out.log").toFile())
                .redirectError(dir.resolve("err.log").toFile())
                .start();
        return process;
    }

    private void awaitFile(Path p) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(p)) {
            assertThat(process.isAlive())
                    .as("daemon died: %s", Files.readString(dir.resolve("err.log")))
                    .isTrue();
            assertThat(System.nanoTime()).as("daemon not ready within 30 s").isLessThan(deadline);
            Thread.sleep(5);
        }
    }

    private Path image(String format) throws Exception {
        Path img = dir.resolve("disk." + format);
        if (format.equals("raw")) {
            try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
                f.setLength(64 * MiB);
            }
        } else {
            Interop.qemuImg("create", "-q", "-f", format, img.toString(), "64M").assertOk();
        }
        return img;
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"raw", "qcow2"})
    void guestWritesAreTrackedAndSigtermClosesEverything(String format) throws Exception {
        Interop.require("qemu-io");
        Path img = image(format);
        Path socket = dir.resolve("qmp.sock");
        Path pid = dir.resolve("strata.pid");
        long started = System.nanoTime();
        start(List.of(
                "--blockdev",
                "{\"driver\":\"" + format + "\",\"node-name\":\"drive0\",\"file\":{\"driver\":\"file\",\"filename\":\""
                        + img + "\"}}",
                "--chardev",
                "socket,id=qmp0,path=" + socket + ",server=on,wait=off",
                "--monitor",
                "chardev=qmp0",
                "--pidfile",
                pid.toString()));
        awaitFile(pid);
        System.out.printf("strata daemon (%s) ready after %d ms%n", format, (System.nanoTime() - started) / 1_000_000);
        assertThat(Files.readString(pid).strip()).isEqualTo(Long.toString(process.pid()));
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(socket)))
                .isEqualTo("rw-------");

        long seed = System.nanoTime();
        SplittableRandom rnd = new SplittableRandom(seed);
        BitmapModel model = new BitmapModel(64 * MiB, 65536);
        List<long[]> written = new ArrayList<>();
        try (QmpClient qmp = QmpClient.connect(socket).negotiate()) {
            qmp.ok("block-dirty-bitmap-add", Map.of("node", "drive0", "name", "bitmap0"));
            for (int i = 0; i < 40; i++) {
                long len = 512 * (1 + rnd.nextInt(300));
                long off = 512 * rnd.nextLong((64 * MiB - len) / 512);
                int pattern = 1 + rnd.nextInt(255);
                Object r = qmp.ok(
                        "human-monitor-command",
                        Map.of("command-line", "qemu-io drive0 \"write -P " + pattern + " " + off + " " + len + "\""));
                assertThat(r).as("seed %d", seed).isEqualTo("");
                model.write(off, len);
                written.add(new long[] {off, len, pattern});
            }
            @SuppressWarnings("unchecked")
            Map<String, Object> drive = ((List<Map<String, Object>>) qmp.ok("query-block", null)).getFirst();
            @SuppressWarnings("unchecked")
            Map<String, Object> bitmap = ((List<Map<String, Object>>)
                            ((Map<String, Object>) drive.get("inserted")).get("dirty-bitmaps"))
                    .getFirst();
            assertThat(bitmap).as("seed %d", seed).containsEntry("count", model.count());
            @SuppressWarnings("unchecked")
            Map<String, Object> sha = (Map<String, Object>)
                    qmp.ok("x-debug-block-dirty-bitmap-sha256", Map.of("node", "drive0", "name", "bitmap0"));
            assertThat(sha).as("seed %d", seed).containsEntry("sha256", model.sha256());
        }

        process.destroy(); // SIGTERM
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue())
                .as(Files.readString(dir.resolve("err.log")))
                .isZero();
        assertThat(socket).doesNotExist();
        assertThat(pid).doesNotExist();
        if (format.equals("qcow2")) {
            // closed cleanly: QEMU finds no corruption and the dirty flag cleared
            assertThat(Interop.qemuImg("check", img.toString()).assertOk().stdout())
                    .contains("No errors were found on the image.");
            assertThat(Interop.qemuImg("info", "--output=json", img.toString())
                            .assertOk()
                            .stdout())
                    .contains("\"dirty-flag\": false");
        }
        // the last write to each byte wins; check the final contents of a few writes with QEMU's qemu-io
        for (int i = written.size() - 1; i >= written.size() - 5; i--) {
            long[] w = written.get(i);
            boolean overwritten = false;
            for (int k = i + 1; k < written.size(); k++) {
                long[] later = written.get(k);
                overwritten |= later[0] < w[0] + w[1] && w[0] < later[0] + later[1];
            }
            if (overwritten) {
                continue;
            }
            Interop.Result r =
                    Interop.qemuIo("-f", format, "-c", "read -P " + w[2] + " " + w[0] + " " + w[1], img.toString());
            r.assertOk();
            assertThat(r.stdout()).as("seed %d", seed).doesNotContain("Pattern verification failed");
        }
    }

    @Test
    void quitEndsTheProcessAfterTheReply() throws Exception {
        Path img = image("raw");
        Path socket = dir.resolve("qmp.sock");
        start(List.of(
                "--blockdev", "driver=file,node-name=file0,filename=" + img,
                "--blockdev", "driver=raw,node-name=drive0,file=file0",
                "--qmp", "unix:" + socket + ",server=on,wait=off"));
        awaitFile(socket);
        try (QmpClient qmp = QmpClient.connect(socket).negotiate()) {
            assertThat(qmp.ok("quit", null)).isEqualTo(Map.of());
            assertThat(qmp.closedByServer(10_000)).isTrue();
        }
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).isZero();
        assertThat(socket).doesNotExist();
    }

    @Test
    void sigintShutsDownLikeSigterm() throws Exception {
        Path socket = dir.resolve("qmp.sock");
        start(List.of("--qmp", "unix:" + socket + ",server=on,wait=off"));
        awaitFile(socket);
        new ProcessBuilder("kill", "-INT", Long.toString(process.pid())).start().waitFor();
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).isZero();
        assertThat(socket).doesNotExist();
    }

    @Test
    void aBadOptionStopsStartUpWithQemusMessage() throws Exception {
        Path img = image("raw");
        start(List.of("--blockdev", "driver=file,node-name=f0,filename=" + img + ",bogus=1"));
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).isEqualTo(1);
        assertThat(Files.readString(dir.resolve("err.log")))
                .contains("--blockdev driver=file,node-name=f0,filename=" + img
                        + ",bogus=1: Parameter 'bogus' is unexpected");
        start(List.of("--monitor", "chardev=nope"));
        assertThat(process.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(process.exitValue()).isEqualTo(1);
        assertThat(Files.readString(dir.resolve("err.log")))
                .contains("--monitor chardev=nope: chardev \"nope\" not found");
    }
}
