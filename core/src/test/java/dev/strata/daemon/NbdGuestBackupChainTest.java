package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The seed's incremental chain (full, incremental.0, incremental.1) with the guest writing over
 * NBD: qemu-io processes write through the export while each backup job runs (slowed with
 * {@code speed}), and every image of the chain equals the disk as it was when its job started.
 */
class NbdGuestBackupChainTest {
    @TempDir
    Path dir;

    private String uri;

    /** Starts two qemu-io processes that write random patterns through the export. */
    private List<Process> guests(long seed) throws Exception {
        List<Process> out = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(seed);
        for (int g = 0; g < 2; g++) {
            List<String> argv = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
            for (int i = 0; i < 40; i++) {
                long off = r.nextLong(BackupFixture.SIZE / 4096 - 64) * 4096;
                argv.add("-c");
                argv.add("write -P " + (1 + r.nextInt(254)) + " " + off + " " + 4096 * (1 + r.nextInt(32)));
            }
            argv.add(uri);
            out.add(new ProcessBuilder(argv).redirectErrorStream(true).start());
        }
        return out;
    }

    private static void await(List<Process> guests) throws Exception {
        for (Process p : guests) {
            String output = new String(p.getInputStream().readAllBytes());
            assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
            assertThat(p.exitValue()).as(output).isZero();
            assertThat(output).doesNotContain("failed");
        }
    }

    /** Starts a backup, snapshots the disk at that point, lets the guests write, checks the result. */
    private void backupWhileGuestsWrite(
            BackupFixture f, String command, Map<String, Object> arguments, Path target, long seed) throws Exception {
        f.qmp.ok(command, arguments);
        Path atStart = f.snapshot("drive0", "t-" + seed + ".raw");
        List<Process> writers = guests(seed);
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive0");
        await(writers);
        BackupFixture.assertSame(atStart, target);
    }

    @Test
    void chainTakenWhileQemuIoWritesOverNbdMatchesTheDiskAtEachStart() throws Exception {
        Interop.require("qemu-io");
        Interop.require("qemu-img");
        try (BackupFixture f = new BackupFixture(dir)) {
            Path nbd = dir.resolve("nbd.sock");
            f.startNbd(nbd);
            f.qmp.ok(
                    "block-export-add",
                    args("type", "nbd", "id", "exp0", "node-name", "drive0", "name", "drive0", "writable", true));
            uri = "nbd+unix:///drive0?socket=" + nbd;
            await(guests(1));

            Path full = dir.resolve("full_backup.img");
            backupWhileGuestsWrite(
                    f, "transaction", BackupFixture.bitmapAndFullBackup(full, "speed", 32L << 20), full, 2);
            String previous = "full_backup.img";
            for (int i = 0; i < 2; i++) {
                String name = "incremental." + i + ".img";
                f.createQcow2(name, previous);
                backupWhileGuestsWrite(
                        f,
                        "drive-backup",
                        args(
                                "device",
                                "drive0",
                                "bitmap",
                                "bitmap0",
                                "target",
                                dir.resolve(name).toString(),
                                "format",
                                "qcow2",
                                "sync",
                                "incremental",
                                "mode",
                                "existing",
                                "speed",
                                4L << 20),
                        dir.resolve(name),
                        10 + i);
                previous = name;
            }
        }
    }
}
