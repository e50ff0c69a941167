package dev.strata.img;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import dev.strata.testing.LockHolder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The data-loss report, run as the user ran it, without the kill: a Strata daemon serves a qcow2
 * disk over NBD while a guest (qemu-io) writes and flushes, and meanwhile {@code strata img check
 * -r} is tried again and again on the same file. Every attempt must be refused with qemu-img's
 * lock error; afterwards every acknowledged write reads back and qemu-img finds the image clean.
 *
 * <p>Randomized: the seed comes from {@code -Dstrata.seed=N} or the clock and is printed.
 */
class CheckRepairUnderGuestWritesTest {
    private static final int ROUNDS = 5;
    private static final int WRITES_PER_ROUND = 120;
    /** Each write has a slot of its own, so that every acknowledged write must still read back. */
    private static final long SLOT = 128 << 10;

    private static final long DISK = ROUNDS * WRITES_PER_ROUND * SLOT;

    @TempDir
    Path dir;

    record GuestWrite(long offset, int length, int pattern) {}

    @Test
    void everyRepairAttemptIsRefusedAndEveryAcknowledgedWriteReadsBack() throws Exception {
        Interop.require("qemu-img", "qemu-io");
        long seed = Long.getLong("strata.seed", System.nanoTime());
        System.out.println(
                "CheckRepairUnderGuestWritesTest seed " + seed + " (replay with -Dstrata.seed=" + seed + ")");
        Random random = new Random(seed);
        Path image = dir.resolve("disk.qcow2");
        Path socket = dir.resolve("nbd.sock");
        Path pidfile = dir.resolve("daemon.pid");
        Interop.qemuImg("create", "-q", "-f", "qcow2", image.toString(), Long.toString(DISK))
                .assertOk();

        List<GuestWrite> acknowledged = new ArrayList<>();
        int attempts = 0;
        int attemptsDuringWrites = 0;
        try (LockHolder daemon = LockHolder.strataDaemon(
                image,
                "--nbd-server",
                "addr.type=unix,addr.path=" + socket,
                "--export",
                "type=nbd,id=e0,node-name=disk,name=disk,writable=on",
                "--pidfile",
                pidfile.toString())) {
            // the pid file is written last: the export exists once it does (the socket comes earlier)
            awaitFile(pidfile, daemon);
            for (int round = 0; round < ROUNDS; round++) {
                List<GuestWrite> writes = new ArrayList<>();
                List<String> cmd =
                        new ArrayList<>(List.of("qemu-io", "-f", "raw", "nbd+unix:///disk?socket=" + socket));
                for (int i = 0; i < WRITES_PER_ROUND; i++) {
                    long slot = (long) round * WRITES_PER_ROUND + i;
                    int length = 512 * (1 + random.nextInt(128));
                    long offset = slot * SLOT + 512L * random.nextInt((int) ((SLOT - length) / 512) + 1);
                    GuestWrite w = new GuestWrite(offset, length, 1 + random.nextInt(255));
                    writes.add(w);
                    cmd.addAll(List.of("-c", "write -P " + w.pattern() + " " + w.offset() + " " + w.length()));
                }
                cmd.addAll(List.of("-c", "flush"));
                Process guest =
                        new ProcessBuilder(cmd).redirectErrorStream(true).start();
                do {
                    boolean writing = guest.isAlive();
                    String mode = random.nextBoolean() ? "all" : "leaks";
                    ImgTool.Run r = ImgTool.strata("check", "-r", mode, image.toString());
                    attempts++;
                    if (writing && guest.isAlive()) {
                        attemptsDuringWrites++;
                    }
                    assertThat(r.exit())
                            .as("check -r %s, attempt %d: %s", mode, attempts, r.err())
                            .isEqualTo(1);
                    assertThat(r.err())
                            .as("check -r %s, attempt %d", mode, attempts)
                            .isEqualTo("strata img: Could not open '" + image
                                    + "': Failed to get \"write\" lock\nIs another process using the image ["
                                    + image + "]?\n");
                } while (guest.isAlive());
                assertThat(guest.waitFor(60, TimeUnit.SECONDS)).isTrue();
                String out = new String(guest.getInputStream().readAllBytes());
                assertThat(guest.exitValue()).as(out).isZero();
                for (GuestWrite w : writes) {
                    // qemu-io acknowledges each completed write with "wrote LEN/LEN bytes at offset OFF"
                    if (out.contains(
                            "wrote " + w.length() + "/" + w.length() + " bytes at offset " + w.offset() + "\n")) {
                        acknowledged.add(w);
                    }
                }
            }
            assertThat(daemon.alive()).isTrue();
        }
        assertThat(attemptsDuringWrites)
                .as("repair attempts made while the guest was writing (of %d)", attempts)
                .isPositive();
        assertThat(acknowledged).hasSize(ROUNDS * WRITES_PER_ROUND);

        Interop.Result check = Interop.qemuImg("check", image.toString());
        assertThat(check.exitCode()).as(check.stdout() + check.stderr()).isZero();
        List<String> reads = new ArrayList<>(List.of("qemu-io", "-r", "-f", "qcow2"));
        for (GuestWrite w : acknowledged) {
            reads.addAll(List.of("-c", "read -P " + w.pattern() + " " + w.offset() + " " + w.length()));
        }
        reads.add(image.toString());
        Interop.Result read = Interop.run(reads);
        assertThat(read.stdout() + read.stderr()).doesNotContain("Pattern verification failed");
        assertThat(read.exitCode()).isZero();
    }

    private static void awaitFile(Path file, LockHolder daemon) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(file)) {
            assertThat(daemon.alive()).as("daemon died: %s", daemon.stderr()).isTrue();
            assertThat(System.nanoTime()).as("daemon not ready within 30 s").isLessThan(deadline);
            Thread.sleep(10);
        }
    }
}
