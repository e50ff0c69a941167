package dev.strata.testing;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A process (interactive qemu-io, qemu-storage-daemon, a Strata daemon) that keeps an image open,
 * and its locks, until closed; tests open it in try-with-resources so the process never outlives them.
 *
 * <p>{@link #start} returns once the image shows OFD locks in {@code /proc/locks}, so the caller
 * knows QEMU holds them. {@link #lockedBytes} reads that table for any holder, Strata included.
 */
public final class LockHolder implements AutoCloseable {
    private static final Pattern LOCK_LINE = Pattern.compile(
            "^\\d+:\\s+OFDLCK\\s+\\S+\\s+\\S+\\s+-?\\d+\\s+([0-9a-f]+):([0-9a-f]+):(\\d+)\\s+(\\d+)\\s+(\\d+|EOF)");

    private final Process process;
    private final Path stderr;

    private LockHolder(Process process, Path stderr) {
        this.process = process;
        this.stderr = stderr;
    }

    /** Starts {@code command} (stdin stays open, which keeps qemu-io at its prompt) and waits for its locks. */
    public static LockHolder start(Path image, String... command) throws IOException, InterruptedException {
        if (!command[0].startsWith("/")) {
            Interop.require(command[0]);
        }
        Path out = Files.createTempFile("strata-holder-out", ".txt");
        Path err = Files.createTempFile("strata-holder-err", ".txt");
        Process p = new ProcessBuilder(command)
                .redirectOutput(out.toFile())
                .redirectError(err.toFile())
                .start();
        LockHolder holder = new LockHolder(p, err);
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (lockedBytes(image).isEmpty()) {
                if (!p.isAlive()) {
                    throw new AssertionError(
                            "holder exited with " + p.exitValue() + ": " + List.of(command) + "\n" + holder.stderr());
                }
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("holder took no lock on " + image + ": " + List.of(command));
                }
                Thread.sleep(10);
            }
            return holder;
        } catch (IOException | InterruptedException | RuntimeException | AssertionError e) {
            holder.close();
            throw e;
        } finally {
            Files.deleteIfExists(out);
        }
    }

    /**
     * A Strata daemon in a process of its own (this test JVM's class path), holding {@code image}
     * read-write as node {@code disk}, with {@code extra} daemon arguments after it.
     */
    public static LockHolder strataDaemon(Path image, String... extra) throws IOException, InterruptedException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        List<String> cmd = new ArrayList<>(List.of(
                java,
                "--enable-native-access=ALL-UNNAMED",
                "-XX:TieredStopAtLevel=1",
                "-cp",
                System.getProperty("java.class.path"),
                "dev.strata.Main",
                "daemon",
                "--blockdev",
                "driver=qcow2,node-name=disk,file.driver=file,file.filename=" + image));
        cmd.addAll(List.of(extra));
        return start(image, cmd.toArray(String[]::new));
    }

    /** Whether the holder is still running. */
    public boolean alive() {
        return process.isAlive();
    }

    public String stderr() throws IOException {
        return Files.readString(stderr, StandardCharsets.UTF_8);
    }

    @Override
    public void close() throws IOException {
        try {
            process.getOutputStream().close();
            process.destroy();
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        } finally {
            Files.deleteIfExists(stderr);
        }
    }

    /** The bytes of {@code file} that anyone holds an OFD lock on, from {@code /proc/locks}. */
    public static Set<Long> lockedBytes(Path file) throws IOException {
        long dev = (long) Files.getAttribute(file, "unix:dev");
        long ino = (long) Files.getAttribute(file, "unix:ino");
        // glibc's major()/minor() split of st_dev
        long major = ((dev >>> 8) & 0xfff) | ((dev >>> 32) & ~0xfffL);
        long minor = (dev & 0xff) | ((dev >>> 12) & ~0xffL);
        Set<Long> bytes = new TreeSet<>();
        List<String> lines = new ArrayList<>(Files.readAllLines(Path.of("/proc/locks")));
        for (String line : lines) {
            Matcher m = LOCK_LINE.matcher(line);
            if (m.find()
                    && Long.parseLong(m.group(1), 16) == major
                    && Long.parseLong(m.group(2), 16) == minor
                    && Long.parseLong(m.group(3)) == ino) {
                long start = Long.parseLong(m.group(4));
                long end = m.group(5).equals("EOF") ? start + 1000 : Long.parseLong(m.group(5));
                for (long b = start; b <= end && b < start + 1000; b++) {
                    bytes.add(b);
                }
            }
        }
        return bytes;
    }
}
