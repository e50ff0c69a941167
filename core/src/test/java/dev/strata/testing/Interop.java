package dev.strata.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Runs QEMU's real tools (qemu-img, qemu-io, nbdinfo, nbdcopy, qemu-storage-daemon) from tests.
 *
 * <p>{@link #require(String)} skips the calling test when a tool is missing, unless the environment
 * sets {@code STRATA_REQUIRE_INTEROP=1} (CI does), in which case a missing tool fails the test.
 */
public final class Interop {
    private Interop() {}

    /** The outcome of one tool run. */
    public record Result(int exitCode, String stdout, String stderr) {
        public Result assertOk() {
            if (exitCode != 0) {
                throw new AssertionError("exit " + exitCode + "\nstdout: " + stdout + "\nstderr: " + stderr);
            }
            return this;
        }
    }

    public static boolean interopRequired() {
        return "1".equals(System.getenv("STRATA_REQUIRE_INTEROP"));
    }

    /** Ensures each tool is on the PATH: skips the test without one, or fails under CI. */
    public static void require(String... tools) {
        for (String tool : tools) {
            boolean present = onPath(tool);
            if (!present && interopRequired()) {
                throw new AssertionError(tool + " is not installed and STRATA_REQUIRE_INTEROP=1");
            }
            assumeTrue(present, tool + " is not installed; interop test skipped");
        }
    }

    public static boolean onPath(String tool) {
        String path = System.getenv().getOrDefault("PATH", "/usr/bin:/bin");
        for (String dir : path.split(":")) {
            if (Files.isExecutable(Path.of(dir, tool))) {
                return true;
            }
        }
        return false;
    }

    /** Runs a command to completion (60 s limit) and captures its output. */
    public static Result run(String... command) throws IOException, InterruptedException {
        return run(List.of(command));
    }

    public static Result run(List<String> command) throws IOException, InterruptedException {
        require(command.getFirst());
        Path out = Files.createTempFile("strata-out", ".txt");
        Path err = Files.createTempFile("strata-err", ".txt");
        try {
            Process p = new ProcessBuilder(new ArrayList<>(command))
                    .redirectOutput(out.toFile())
                    .redirectError(err.toFile())
                    .start();
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("timed out: " + command);
            }
            return new Result(
                    p.exitValue(),
                    Files.readString(out, StandardCharsets.UTF_8),
                    Files.readString(err, StandardCharsets.UTF_8));
        } finally {
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
        }
    }

    public static Result qemuImg(String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add("qemu-img");
        cmd.addAll(List.of(args));
        return run(cmd);
    }

    public static Result qemuIo(String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add("qemu-io");
        cmd.addAll(List.of(args));
        return run(cmd);
    }

    /**
     * A qcow2 image's persistent bitmap as QEMU reads it: qemu-nbd exports it (read-only), nbdinfo
     * maps it; nbdinfo's lines (offset, length, 0 clean or 1 dirty).
     */
    public static String qemuBitmapMap(java.nio.file.Path image, String bitmap)
            throws IOException, InterruptedException {
        Result r = run(
                "nbdinfo",
                "--map=qemu:dirty-bitmap:" + bitmap,
                "--",
                "[",
                "qemu-nbd",
                "-r",
                "-f",
                "qcow2",
                "-B",
                bitmap,
                image.toString(),
                "]");
        r.assertOk();
        return r.stdout();
    }
}
