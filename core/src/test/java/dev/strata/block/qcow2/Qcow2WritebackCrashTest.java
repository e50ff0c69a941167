package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Metadata write-back (a backup target's mode) under SIGKILL: a {@link CrashWriter} with write-back
 * on, flushing every 16 operations, is killed at random moments. Each time {@code qemu-img check}
 * must find no corruption (leaks are allowed), and every byte that a write flushed before the kill
 * left, and nothing after that flush touched, must read back. Writes after the last flush may be
 * lost: that is what write-back allows.
 */
class Qcow2WritebackCrashTest {
    private static final int SIZE = 8 << 20;
    private static final int KILLS = 10;
    /** Owner of a byte that no check may rely on (never written, zeroed, trimmed, or unflushed). */
    private static final long UNKNOWN = -1;

    @TempDir
    Path dir;

    @ParameterizedTest(name = "cluster {0}")
    @ValueSource(ints = {512, 65536})
    void killedWriterLeavesNoCorruptionAndKeepsWhatWasFlushed(int clusterSize) throws Exception {
        Interop.require("qemu-img");
        long seed = System.nanoTime();
        SplittableRandom rnd = new SplittableRandom(seed);
        Path image = dir.resolve("wb.qcow2");
        TestImages.createQcow2(image, Qcow2Create.Options.of(SIZE).withClusterSize(clusterSize));
        long[] owner = new long[SIZE];
        Arrays.fill(owner, UNKNOWN);
        long nextIndex = 0;
        long checked = 0;
        for (int kill = 0; kill < KILLS; kill++) {
            String what = "seed " + seed + ", kill " + kill + ", cluster " + clusterSize;
            List<String> log =
                    Qcow2CrashTest.runAndKill(image, rnd.nextLong(), nextIndex, 50 + rnd.nextInt(400), "writeback");
            nextIndex = apply(log, owner) + 1;

            Images.assertNoCorruption(image, what);

            byte[] disk = Images.readThroughStrata(image);
            for (int i = 0; i < SIZE; i++) {
                if (owner[i] != UNKNOWN) {
                    checked++;
                    if (disk[i] != CrashWriter.pattern(owner[i], i)) {
                        throw new AssertionError(what + ": byte " + i + " written by flushed operation " + owner[i]
                                + " reads " + disk[i]);
                    }
                }
            }
        }
        assertThat(checked).as("seed %d: flushed bytes checked", seed).isPositive();
    }

    /**
     * Replays a writer's log into {@code owner}: flushed writes own their bytes; anything begun
     * after the last flush (and zero writes and trims at any time) makes its bytes unknown.
     * Returns the last operation index begun.
     */
    private static long apply(List<String> log, long[] owner) {
        long lastFlushed = -1;
        for (String line : log) {
            if (line.startsWith("F ")) {
                lastFlushed = Long.parseLong(line.substring(2));
            }
        }
        long last = -1;
        for (String line : log) {
            String[] f = line.split(" ");
            if (!f[0].equals("B")) {
                continue;
            }
            long index = Long.parseLong(f[1]);
            int offset = (int) Long.parseLong(f[3]);
            int length = (int) Long.parseLong(f[4]);
            long value = f[2].equals("W") && index <= lastFlushed ? index : UNKNOWN;
            Arrays.fill(owner, offset, offset + length, value);
            last = index;
        }
        return last;
    }
}
