package dev.strata.daemon;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The daemon's part of the JVM's ahead-of-time training run ({@code strata aot-train}): a daemon
 * on a qcow2 image, a QMP client that negotiates, adds a bitmap, writes as a guest, queries, takes
 * a full backup and a series of small incremental ones, and quits, so that {@code ./strata daemon}
 * starts with these classes already loaded and linked and with the JIT's profiles of them.
 */
public final class DaemonTraining {
    private DaemonTraining() {}

    /** Incremental backups in the training run: enough for the JIT's profiles of the copy path. */
    private static final int BACKUPS = 24;

    /** Clusters each of them copies, scattered over the disk as a guest's writes are. */
    private static final int DIRTY_CLUSTERS = 48;

    public static void run(Path dir, String qcow2Image) throws Exception {
        Path socket = dir.resolve("qmp.sock");
        Daemon d = Daemon.start(
                List.of(
                        new Daemon.Blockdev(
                                "{\"driver\":\"qcow2\",\"node-name\":\"drive0\",\"file\":{\"driver\":\"file\","
                                        + "\"filename\":\"" + qcow2Image + "\"}}"),
                        new Daemon.QmpSocket("unix:" + socket + ",server=on,wait=off")),
                "training");
        try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            ch.connect(UnixDomainSocketAddress.of(socket));
            ByteBuffer in = ByteBuffer.allocate(1 << 16);
            readLine(ch, in); // greeting
            for (String r : new String[] {
                "{\"execute\":\"qmp_capabilities\"}",
                "{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"drive0\",\"name\":\"b\"}}",
                guestWrite(0),
                "{\"execute\":\"query-block\"}",
                "{\"execute\":\"query-named-block-nodes\"}",
                "{\"execute\":\"x-debug-block-dirty-bitmap-sha256\",\"arguments\":{\"node\":\"drive0\",\"name\":\"b\"}}",
            }) {
                execute(ch, in, r);
            }
            backups(dir, ch, in);
            // the daemon may close the socket before its answer to quit arrives
            ch.write(ByteBuffer.wrap("{\"execute\":\"quit\"}\n".getBytes(StandardCharsets.US_ASCII)));
        }
        d.awaitShutdown();
    }

    /**
     * A full backup, then incremental ones of a few scattered clusters each: the code a running
     * daemon repeats most, so that the cache's profiles let the JIT compile it from the first
     * backups on (JEP 515) rather than after a few dozen.
     */
    private static void backups(Path dir, SocketChannel ch, ByteBuffer in) throws IOException {
        backup(ch, in, "full", dir.resolve("full.qcow2"), "\"sync\":\"full\"");
        Random random = new Random(1);
        for (int i = 0; i < BACKUPS; i++) {
            execute(
                    ch,
                    in,
                    "{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"drive0\",\"name\":\"i\"}}");
            for (int c = 0; c < DIRTY_CLUSTERS; c++) {
                execute(ch, in, guestWrite((long) random.nextInt(TRAINING_CLUSTERS) << 16));
            }
            backup(ch, in, "inc" + i, dir.resolve("inc.qcow2"), "\"sync\":\"incremental\",\"bitmap\":\"i\"");
            execute(
                    ch,
                    in,
                    "{\"execute\":\"block-dirty-bitmap-remove\",\"arguments\":{\"node\":\"drive0\",\"name\":\"i\"}}");
        }
    }

    /** The training image's 64 KiB clusters (16 MiB, as aot-train makes it). */
    private static final int TRAINING_CLUSTERS = 256;

    private static String guestWrite(long offset) {
        return "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
                + "\"qemu-io drive0 \\\"write -P 0xab " + offset + " 64k\\\"\"}}";
    }

    private static void backup(SocketChannel ch, ByteBuffer in, String job, Path target, String sync)
            throws IOException {
        Files.deleteIfExists(target);
        // the job may end, and say so, before the command's answer arrives
        String end = execute(
                        ch,
                        in,
                        "{\"execute\":\"drive-backup\",\"arguments\":{\"job-id\":\"" + job
                                + "\",\"device\":\"drive0\",\"format\":\"qcow2\",\"target\":\"" + target + "\","
                                + sync + "}}")
                .stream()
                .filter(DaemonTraining::endsJob)
                .findFirst()
                .orElse(null);
        while (end == null) {
            String line = readLine(ch, in);
            if (line == null) {
                throw new IOException("training backup " + job + ": the daemon closed the connection");
            }
            if (endsJob(line)) {
                end = line;
            }
        }
        if (!end.contains("BLOCK_JOB_COMPLETED") || end.contains("\"error\"")) {
            throw new IOException("training backup " + job + " did not complete: " + end);
        }
    }

    private static boolean endsJob(String line) {
        return line.contains("BLOCK_JOB_COMPLETED") || line.contains("BLOCK_JOB_CANCELLED");
    }

    /** Sends one command and reads up to its answer; returns the events read on the way. */
    private static List<String> execute(SocketChannel ch, ByteBuffer in, String request) throws IOException {
        ch.write(ByteBuffer.wrap((request + "\n").getBytes(StandardCharsets.US_ASCII)));
        List<String> events = new ArrayList<>();
        while (true) {
            String line = readLine(ch, in);
            if (line == null) {
                throw new IOException("training command got no answer: " + request);
            }
            if (line.startsWith("{\"return\"")) {
                return events;
            }
            if (line.startsWith("{\"error\"")) {
                throw new IOException("training command failed: " + request + " -> " + line);
            }
            events.add(line);
        }
    }

    /** The next line from the daemon, without its CRLF; null at the end of the stream. */
    private static String readLine(SocketChannel ch, ByteBuffer in) throws IOException {
        while (true) {
            for (int i = 0; i + 1 < in.position(); i++) {
                if (in.get(i) == '\r' && in.get(i + 1) == '\n') {
                    String line = new String(in.array(), 0, i, StandardCharsets.UTF_8);
                    int rest = in.position() - (i + 2);
                    in.flip().position(i + 2);
                    in.compact();
                    in.position(rest);
                    return line;
                }
            }
            if (ch.read(in) < 0) {
                return null;
            }
        }
    }
}
