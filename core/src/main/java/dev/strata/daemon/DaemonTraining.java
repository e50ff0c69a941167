package dev.strata.daemon;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;

/**
 * The daemon's part of the JVM's ahead-of-time training run ({@code strata aot-train}): a daemon
 * on a qcow2 image, a QMP client that negotiates, adds a bitmap, writes as a guest, queries and
 * quits, so that {@code ./strata daemon} starts with these classes already loaded and linked.
 */
public final class DaemonTraining {
    private DaemonTraining() {}

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
            String[] requests = {
                "{\"execute\":\"qmp_capabilities\"}",
                "{\"execute\":\"block-dirty-bitmap-add\",\"arguments\":{\"node\":\"drive0\",\"name\":\"b\"}}",
                "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
                        + "\"qemu-io drive0 \\\"write -P 0xab 0 64k\\\"\"}}",
                "{\"execute\":\"query-block\"}",
                "{\"execute\":\"query-named-block-nodes\"}",
                "{\"execute\":\"x-debug-block-dirty-bitmap-sha256\",\"arguments\":{\"node\":\"drive0\",\"name\":\"b\"}}",
                "{\"execute\":\"quit\"}",
            };
            ByteBuffer in = ByteBuffer.allocate(1 << 16);
            readLine(ch, in); // greeting
            for (String r : requests) {
                ch.write(ByteBuffer.wrap((r + "\n").getBytes(StandardCharsets.US_ASCII)));
                readLine(ch, in);
            }
        }
        d.awaitShutdown();
    }

    private static void readLine(SocketChannel ch, ByteBuffer in) throws IOException {
        while (true) {
            for (int i = 0; i + 1 < in.position(); i++) {
                if (in.get(i) == '\r' && in.get(i + 1) == '\n') {
                    int rest = in.position() - (i + 2);
                    in.flip().position(i + 2);
                    in.compact();
                    in.position(rest);
                    return;
                }
            }
            if (ch.read(in) < 0) {
                return;
            }
        }
    }
}
