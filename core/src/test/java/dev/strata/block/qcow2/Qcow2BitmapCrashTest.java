package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Kills a {@link BitmapCrashWriter} with SIGKILL at random moments while it adds, removes and
 * stores persistent bitmaps, 20 times on one image. After each kill: qemu-img check finds no
 * corruption (leaks are allowed); QEMU and Strata both open the image; every bitmap whose store
 * completed and that no later removal touched is still listed; a bitmap whose removal completed
 * is gone; and every listed bitmap is either marked in use (inconsistent) or readable by QEMU.
 */
class Qcow2BitmapCrashTest {
    private static final int KILLS = 20;

    @TempDir
    Path dir;

    @Test
    void killedWhileStoringBitmapsLeavesAConsistentImage() throws Exception {
        Interop.require("qemu-img");
        Interop.require("qemu-nbd");
        Interop.require("nbdinfo");
        long seed = System.nanoTime();
        SplittableRandom rnd = new SplittableRandom(seed);
        Path image = dir.resolve("b.qcow2");
        TestImages.createQcow2(image, Qcow2Create.Options.of(16 << 20));
        Set<String> stored = new HashSet<>();
        Set<String> removed = new HashSet<>();
        int round = 0;
        for (int kill = 0; kill < KILLS; kill++) {
            String what = "seed " + seed + ", kill " + kill;
            List<String> log = runAndKill(image, rnd.nextLong(), round, rnd.nextInt(1500));
            List<String> added = new ArrayList<>();
            String removing = null;
            for (String line : log) {
                String[] f = line.split(" ");
                switch (f[0]) {
                    case "O" -> round = Integer.parseInt(f[1]) + 1;
                    case "A" -> added.add(f[1]);
                    case "R" -> removing = f[1];
                    case "r" -> {
                        removed.add(f[1]);
                        stored.remove(f[1]);
                        removing = null;
                    }
                    case "C" -> {
                        stored.addAll(added);
                        added.clear();
                    }
                    default -> {}
                }
            }
            if (removing != null) {
                // a removal cut short may or may not have reached the image
                stored.remove(removing);
                removed.remove(removing);
            }

            Images.assertNoCorruption(image, what);
            String info = Interop.qemuImg("info", image.toString()).assertOk().stdout();
            List<String> listed = new ArrayList<>();
            for (String line : info.split("\n")) {
                if (line.strip().startsWith("name: ")) {
                    listed.add(line.strip().substring("name: ".length()));
                }
            }
            assertThat(listed)
                    .as("%s: stored bitmaps are listed\n%s", what, String.join("\n", log))
                    .containsAll(stored);
            for (String gone : removed) {
                assertThat(listed).as("%s: removed bitmaps are gone", what).doesNotContain(gone);
            }
            try (BlockGraph g = Drivers.newGraph();
                    BlockNode n = g.openImage(image.toString(), "qcow2", OpenFlags.READ_ONLY)) {
                for (DirtyBitmap b : n.bitmaps().all()) {
                    if (!b.inconsistent()) {
                        Interop.qemuBitmapMap(image, b.name());
                    }
                }
                assertThat(n.bitmaps().all()).as(what).hasSameSizeAs(listed);
            }
        }
    }

    private static List<String> runAndKill(Path image, long seed, int firstRound, int delayMs) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(
                        java,
                        "--enable-native-access=ALL-UNNAMED",
                        "-Xshare:auto",
                        "-cp",
                        System.getProperty("java.class.path"),
                        BitmapCrashWriter.class.getName(),
                        image.toString(),
                        Long.toString(seed),
                        Integer.toString(firstRound))
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
        List<String> lines = new ArrayList<>();
        try (BufferedReader r =
                new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.US_ASCII))) {
            String first = r.readLine();
            assertThat(first).as("writer started").isEqualTo("ready");
            Thread.sleep(delayMs);
            assertThat(p.toHandle().destroyForcibly()).isTrue();
            assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
            for (String line; (line = r.readLine()) != null; ) {
                lines.add(line);
            }
        } finally {
            p.toHandle().destroyForcibly();
        }
        return lines;
    }
}
