package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Kills a Strata writer with SIGKILL at random moments and checks that nothing is corrupt and no
 * acknowledged write is lost: {@code qemu-img check} finds no corruption (leaks are allowed), and
 * the image reads as every completed write left it. Only the one write in flight at the kill, and
 * discarded ranges (whose contents qcow2 leaves unspecified), may read either way.
 *
 * <p>13 kills per image and four images: 52 crashes per run.
 */
class Qcow2CrashTest {
    private static final long SIZE = 32L << 20;
    private static final int KILLS = 13;
    private static final byte BASE_BYTE = 0x5c;
    private static final long BASE_LENGTH = 16L << 20;

    @TempDir
    Path dir;

    @ParameterizedTest(name = "cluster {0}, backing {1}")
    @CsvSource({"512, false", "4096, false", "65536, false", "65536, true"})
    void killedWriterLeavesAConsistentImage(int clusterSize, boolean withBacking) throws Exception {
        Interop.require("qemu-img");
        long seed = System.nanoTime();
        SplittableRandom rnd = new SplittableRandom(seed);
        Path image = dir.resolve("crash.qcow2");
        if (withBacking) {
            Path base = dir.resolve("base.qcow2");
            Interop.qemuImg("create", "-q", "-f", "qcow2", base.toString(), Long.toString(SIZE))
                    .assertOk();
            Interop.qemuIo("-f", "qcow2", "-c", "write -P 0x5c 0 16M", base.toString())
                    .assertOk();
            Interop.qemuImg(
                            "create",
                            "-q",
                            "-f",
                            "qcow2",
                            "-o",
                            "cluster_size=" + clusterSize,
                            "-b",
                            base.toString(),
                            "-F",
                            "qcow2",
                            image.toString())
                    .assertOk();
        } else {
            Interop.qemuImg(
                            "create",
                            "-q",
                            "-f",
                            "qcow2",
                            "-o",
                            "cluster_size=" + clusterSize,
                            image.toString(),
                            Long.toString(SIZE))
                    .assertOk();
        }
        Model model = new Model(withBacking);
        long nextIndex = 0;
        for (int kill = 0; kill < KILLS; kill++) {
            String what = "seed " + seed + ", kill " + kill + ", cluster " + clusterSize;
            List<String> log = runAndKill(image, rnd.nextLong(), nextIndex, 20 + rnd.nextInt(400));
            nextIndex = model.apply(log, what) + 1;

            Images.assertNoCorruption(image, what);

            try {
                model.verifyAndAdopt(Images.readThroughStrata(image), what);
            } catch (AssertionError e) {
                // say whether QEMU reads the image the same way, i.e. whether the image or the reader is wrong
                Path raw = dir.resolve("qemu-view.raw");
                Interop.qemuImg("convert", "-U", "-O", "raw", image.toString(), raw.toString())
                        .assertOk();
                byte[] qemu = Files.readAllBytes(raw);
                byte[] strata = Images.readThroughStrata(image);
                int firstDiff = java.util.Arrays.mismatch(qemu, strata);
                throw new AssertionError(
                        e.getMessage() + System.lineSeparator() + "QEMU reads "
                                + (firstDiff < 0
                                        ? "the same as Strata"
                                        : "differently from Strata first at byte " + firstDiff),
                        e);
            }
        }
        // the last word goes to QEMU's reader: its view equals the model Strata's view was checked against
        Path raw = dir.resolve("final.raw");
        Interop.qemuImg("convert", "-O", "raw", image.toString(), raw.toString())
                .assertOk();
        assertThat(Files.readAllBytes(raw))
                .as("seed %d: qemu-img reads the model", seed)
                .isEqualTo(model.bytes);
    }

    /** Runs a {@link CrashWriter} (with {@code mode}, if any) and kills it after {@code delayMs}; its log. */
    static List<String> runAndKill(Path image, long seed, long firstIndex, int delayMs, String... mode)
            throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of(
                java,
                "--enable-native-access=ALL-UNNAMED",
                "-Xshare:auto",
                "-cp",
                System.getProperty("java.class.path"),
                CrashWriter.class.getName(),
                image.toString(),
                Long.toString(seed),
                Long.toString(firstIndex)));
        cmd.addAll(List.of(mode));
        Process p = new ProcessBuilder(cmd)
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
        try {
            return killAndLog(p, delayMs);
        } finally {
            if (p.isAlive()) {
                p.toHandle().destroyForcibly(); // a failed check must not leave a writer running
            }
        }
    }

    private static List<String> killAndLog(Process p, int delayMs) throws Exception {
        List<String> lines = new CopyOnWriteArrayList<>();
        AtomicReference<IOException> readFailure = new AtomicReference<>();
        Object ready = new Object();
        Thread reader = Thread.ofVirtual().start(() -> {
            try (BufferedReader r =
                    new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.US_ASCII))) {
                for (String line; (line = r.readLine()) != null; ) {
                    lines.add(line);
                    if (line.equals("ready")) {
                        synchronized (ready) {
                            ready.notifyAll();
                        }
                    }
                }
            } catch (IOException e) {
                // the pipe stays open until the reader has seen its end, so no failure is expected
                readFailure.set(e);
            }
        });
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        synchronized (ready) {
            while (!lines.contains("ready") && p.isAlive() && System.nanoTime() < deadline) {
                ready.wait(100);
            }
        }
        assertThat(lines)
                .as("writer started (exit %s)", p.isAlive() ? "-" : p.exitValue())
                .contains("ready");
        Thread.sleep(delayMs);
        // SIGKILL through the process handle: Process.destroyForcibly() would also close our end of
        // the writer's stdout, dropping the lines still in the pipe, i.e. operations the writer had
        // begun or completed before the kill; the model would then miss writes the image holds
        assertThat(p.toHandle().destroyForcibly()).as("SIGKILL sent").isTrue();
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).as("writer died").isTrue();
        assertThat(p.exitValue()).as("writer ended by SIGKILL, not by itself").isEqualTo(128 + 9);
        // the pipe reaches its end once the dead writer's descriptor is gone: read everything
        assertThat(reader.join(Duration.ofSeconds(30)))
                .as("writer's log read to its end")
                .isTrue();
        assertThat(readFailure.get()).as("reading the writer's log").isNull();
        return new ArrayList<>(lines);
    }

    /**
     * The expected disk: exact bytes, plus bytes that may read one of two ways (the operation in
     * flight at the kill, or a discard), and discarded bytes that may also read as zeros or as the
     * backing file.
     */
    private static final class Model {
        final byte[] bytes = new byte[(int) SIZE];
        final byte[] alternative = new byte[(int) SIZE];
        final BitSet fuzzy = new BitSet();
        final BitSet discarded = new BitSet();
        final boolean withBacking;
        /** Every operation seen, "kill: line" (the last one of a kill may be in flight), for failure reports. */
        final List<String> history = new ArrayList<>();

        int kills;

        Model(boolean withBacking) {
            this.withBacking = withBacking;
            if (withBacking) {
                java.util.Arrays.fill(bytes, 0, (int) BASE_LENGTH, BASE_BYTE);
            }
        }

        byte base(long i) {
            return withBacking && i < BASE_LENGTH ? BASE_BYTE : 0;
        }

        /** Applies the log; returns the highest operation index seen. */
        long apply(List<String> log, String what) {
            long last = -1;
            String[] open = null;
            kills++;
            for (String line : log) {
                if (line.startsWith("B ")) {
                    history.add(kills + ": " + line);
                }
                String[] f = line.split(" ");
                if (f[0].equals("B")) {
                    open = f;
                    last = Long.parseLong(f[1]);
                } else if (f[0].equals("D")) {
                    assertThat(open).as(what).isNotNull();
                    assertThat(f[1]).as(what).isEqualTo(open[1]);
                    applyOp(open, false);
                    open = null;
                }
            }
            if (open != null) {
                applyOp(open, true);
                history.add(kills + ": in flight at the kill: " + String.join(" ", open));
            }
            return last;
        }

        private void applyOp(String[] f, boolean inFlight) {
            long index = Long.parseLong(f[1]);
            String kind = f[2];
            int offset = Integer.parseInt(f[3]);
            int length = Integer.parseInt(f[4]);
            for (int i = offset; i < offset + length; i++) {
                byte next = switch (kind) {
                    case "W" -> CrashWriter.pattern(index, i);
                    case "Z" -> 0;
                    default -> base(i);
                };
                if (inFlight || kind.equals("T")) {
                    // may read as before or after; only a discard may also read as zeros or the
                    // backing file, an interrupted write or zero write never shows a third value
                    if (!fuzzy.get(i)) {
                        alternative[i] = bytes[i];
                    }
                    bytes[i] = next;
                    fuzzy.set(i);
                    if (kind.equals("T")) {
                        discarded.set(i);
                    }
                } else {
                    bytes[i] = next;
                    fuzzy.clear(i);
                    discarded.clear(i);
                }
            }
        }

        private String touching(long at) {
            StringBuilder sb = new StringBuilder();
            for (String h : history) {
                if (h.contains("in flight")) {
                    sb.append("  kill ").append(h).append(System.lineSeparator());
                    continue;
                }
                String[] f = h.split(" ");
                long off = Long.parseLong(f[4]);
                long len = Long.parseLong(f[5]);
                if (at >= off && at < off + len) {
                    sb.append("  kill ").append(h).append(System.lineSeparator());
                }
            }
            return sb.toString();
        }

        void verifyAndAdopt(byte[] actual, String what) {
            for (int i = 0; i < actual.length; i++) {
                if (actual[i] == bytes[i]) {
                    continue;
                }
                boolean allowed = fuzzy.get(i)
                        && (actual[i] == alternative[i]
                                || (discarded.get(i) && (actual[i] == 0 || actual[i] == base(i))));
                if (!allowed) {
                    throw new AssertionError(String.format(
                            "%s: byte %d reads 0x%02x, expected 0x%02x%s; operations on it:%n%s",
                            what,
                            i,
                            actual[i],
                            bytes[i],
                            fuzzy.get(i) ? String.format(" or 0x%02x", alternative[i]) : "",
                            touching(i)));
                }
                bytes[i] = actual[i];
            }
            fuzzy.clear();
            discarded.clear();
        }
    }
}
