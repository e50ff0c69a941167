package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * SIGKILLs a process writing into a qcow2 image at random moments; after every kill
 * {@code qemu-img check} must find no corruption (leaked clusters are allowed). The image keeps
 * growing across kills, so later rounds kill it in the middle of refcount-table growth too (512-byte
 * clusters). {@code -Dqcow2.crashRounds=N} runs more rounds.
 */
class Qcow2CrashTest {
    @TempDir
    Path dir;

    @ParameterizedTest(name = "cluster {0}")
    @ValueSource(ints = {512, 65536})
    void killedWriterNeverCorruptsTheImage(int clusterSize) throws Exception {
        Interop.require("qemu-img");
        int rounds = Integer.getInteger("qcow2.crashRounds", 8);
        long seed = Long.getLong("qcow2.seed", 0xc4a5L + clusterSize);
        Random rnd = new Random(seed);
        Path image = dir.resolve("crash.qcow2");
        Path base = dir.resolve("base.qcow2");
        Qcow2Create.create(base, Qcow2Create.Options.of(24L << 20).withClusterSize(clusterSize));
        Qcow2Create.create(
                image,
                Qcow2Create.Options.of(32L << 20).withClusterSize(clusterSize).withBacking("base.qcow2", "qcow2"));
        String java = ProcessHandle.current().info().command().orElse("java");
        for (int round = 0; round < rounds; round++) {
            Process p = new ProcessBuilder(List.of(
                            java,
                            "-cp",
                            System.getProperty("java.class.path"),
                            CrashWriter.class.getName(),
                            image.toString(),
                            Long.toString(rnd.nextLong())))
                    .redirectErrorStream(true)
                    .start();
            try (BufferedReader out =
                    new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line = out.readLine();
                assertThat(line)
                        .as("seed %d round %d: writer started", seed, round)
                        .isEqualTo("ready");
                Thread.sleep(20 + rnd.nextInt(400));
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
            }
            Interop.Result r = Interop.qemuImg("check", image.toString());
            // exit 0: clean; exit 3: leaks only; anything else is corruption
            assertThat(r.exitCode())
                    .as("seed %d round %d: qemu-img check\n%s%s", seed, round, r.stdout(), r.stderr())
                    .isIn(0, 3);
            assertThat(r.stdout()).as("seed %d round %d", seed, round).doesNotContain("ERROR", "corrupt");
        }
    }
}
