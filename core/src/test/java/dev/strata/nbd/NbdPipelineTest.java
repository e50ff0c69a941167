package dev.strata.nbd;

import static dev.strata.block.nbd.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.FaultyDisk;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Many requests in flight on one connection, as a VM's QEMU sends them: every request gets exactly
 * one reply with its handle, the data is right, the bitmap holds every write, and a client that
 * leaves with requests in flight leaves none behind on the node.
 */
@Timeout(60)
class NbdPipelineTest {
    static final long SIZE = 16 << 20;

    @TempDir
    Path dir;

    BlockGraph graph;
    NbdServer server;
    SocketAddress address;
    BlockNode node;

    @BeforeEach
    void start() throws Exception {
        Path img = dir.resolve("disk.raw");
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(SIZE);
        }
        graph = Drivers.newGraph();
        node = graph.add(BlockOptions.parseKeyValue(
                "driver=raw,node-name=drive0,file.driver=file,file.filename=" + img, "driver"));
        node.bitmaps().add("b0", SIZE, 4096, false);
        server = new NbdServer();
        server.start(new NbdServer.Unix(dir.resolve("nbd.sock")), 100);
        address = server.boundAddress().orElseThrow();
        server.addExport(new NbdServer.ExportSpec("rw", node, "rw", null, true, List.of(), false, false));
    }

    @AfterEach
    void stop() throws IOException {
        server.close();
        graph.close();
    }

    @Test
    void pipelinedWritesThenReadsEachGetOneReply() throws Exception {
        SplittableRandom random = new SplittableRandom(3);
        int n = 200;
        byte[] model = new byte[(int) SIZE];
        java.util.BitSet dirty = new java.util.BitSet();
        try (NbdTestClient c = NbdTestClient.connect(address).greet().structuredReplies()) {
            assertThat(c.go("rw")).isNull();
            // disjoint 64 KiB slots so the outcome does not depend on the order of service
            for (int i = 0; i < n; i++) {
                long off = i * 65536L + 512L * random.nextInt(64);
                int len = 512 * (1 + random.nextInt(64));
                byte[] data = new byte[len];
                random.nextBytes(data);
                System.arraycopy(data, 0, model, (int) off, len);
                dirty.set((int) (off / 4096), (int) ((off + len + 4095) / 4096));
                c.request(i % 3 == 0 ? CMD_FLAG_FUA : 0, CMD_WRITE, i, off, len);
                c.send(data);
            }
            c.request(0, CMD_FLUSH, n, 0, 0);
            Map<Long, Integer> replies = new HashMap<>();
            for (int i = 0; i <= n; i++) {
                NbdTestClient.Chunk r = c.chunk();
                assertThat(r.error()).isZero();
                replies.merge(r.handle(), 1, Integer::sum);
            }
            assertThat(replies)
                    .hasSize(n + 1)
                    .allSatisfy((h, count) -> assertThat(count).isEqualTo(1));
            for (int i = 0; i < n; i++) {
                c.request(CMD_FLAG_DF, CMD_READ, 1000 + i, i * 65536L, 65536);
            }
            for (int i = 0; i < n; i++) {
                NbdTestClient.Chunk r = c.chunk();
                assertThat(r.type()).isEqualTo(REPLY_TYPE_OFFSET_DATA);
                ByteBuffer p = ByteBuffer.wrap(r.payload());
                long off = p.getLong();
                assertThat(off).isEqualTo((r.handle() - 1000) * 65536L);
                byte[] got = new byte[p.remaining()];
                p.get(got);
                assertThat(got).isEqualTo(java.util.Arrays.copyOfRange(model, (int) off, (int) off + 65536));
            }
        }
        assertThat(node.bitmaps().lookup("b0").count()).isEqualTo(dirty.cardinality() * 4096L);
    }

    @Test
    void aClientLeavingWithRequestsInFlightLeavesNoneBehind() throws Exception {
        for (int round = 0; round < 20; round++) {
            try (NbdTestClient c = NbdTestClient.connect(address).greet()) {
                assertThat(c.go("rw")).isNull();
                for (int i = 0; i < 40; i++) {
                    c.request(0, i % 2 == 0 ? CMD_READ : CMD_WRITE_ZEROES, i, i * 65536L, 65536);
                }
                c.request(0, CMD_FLUSH, 99, 0, 0);
            }
        }
        long deadline = System.nanoTime() + 10_000_000_000L;
        while ((server.clientCount() > 0 || node.inFlight() > 0) && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(server.clientCount()).isZero();
        assertThat(node.inFlight()).isZero();
        List<Long> handles = new ArrayList<>();
        try (NbdTestClient c = NbdTestClient.connect(address).greet()) {
            assertThat(c.go("rw")).isNull();
            c.request(0, CMD_FLUSH, 7, 0, 0);
            handles.add(c.chunk().handle());
        }
        assertThat(handles).containsExactly(7L);
    }

    @Test
    void hardRemovalWhileAClientWritesLeavesTheNodeIdleAndFree() throws Exception {
        server.removeExport("rw", false);
        server.addExport(new NbdServer.ExportSpec(
                "rw", node, "rw", null, true, List.of(new NbdServer.NamedBitmap("b0")), false, false));
        assertThat(node.bitmaps().lookup("b0").busy()).isTrue();
        NbdTestClient c = NbdTestClient.connect(address).greet();
        assertThat(c.go("rw")).isNull();
        java.util.concurrent.atomic.AtomicLong acknowledged = new java.util.concurrent.atomic.AtomicLong();
        Thread writer = Thread.ofVirtual().start(() -> {
            byte[] data = new byte[65536];
            try {
                for (long i = 0; ; i++) {
                    c.request(0, CMD_WRITE, i, (i % 256) * 65536, data.length);
                    c.send(data);
                    if (c.chunk().error() == 0) {
                        acknowledged.incrementAndGet();
                    }
                }
            } catch (IOException expected) {
                // the server dropped the client
            }
        });
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (acknowledged.get() < 50 && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        server.removeExport("rw", true);
        assertThat(node.inFlight()).isZero();
        assertThat(node.hasUsers()).isFalse();
        assertThat(node.bitmaps().lookup("b0").busy()).isFalse();
        writer.join(java.time.Duration.ofSeconds(10));
        assertThat(writer.isAlive()).isFalse();
        c.close();
        assertThat(acknowledged.get()).isGreaterThanOrEqualTo(50);
        graph.remove("drive0");
    }

    @Test
    void aFlushThatWaitsForTheDiskHoldsBackNoReadBehindIt() throws Exception {
        FaultyDisk disk = new FaultyDisk(SIZE);
        disk.holdFlushes();
        graph.register("held-flush", (o, ctx) -> disk);
        BlockNode held =
                graph.add(BlockOptions.empty().put("driver", "held-flush").put("node-name", "held"));
        server.addExport(new NbdServer.ExportSpec("held", held, "held", null, true, List.of(), false, false));
        byte[] data = new byte[4096];
        new SplittableRandom(5).nextBytes(data);
        try {
            try (NbdTestClient c = NbdTestClient.connect(address).greet().structuredReplies()) {
                assertThat(c.go("held")).isNull();
                c.request(0, CMD_WRITE, 1, 8192, data.length);
                c.send(data);
                assertThat(c.chunk().handle()).isEqualTo(1);
                c.request(0, CMD_FLUSH, 2, 0, 0);
                assertThat(disk.awaitHeldFlush(10)).isTrue();
                c.request(CMD_FLAG_DF, CMD_READ, 3, 8192, data.length);
                NbdTestClient.Chunk read = c.chunk();
                assertThat(read.handle()).isEqualTo(3);
                assertThat(Arrays.copyOfRange(read.payload(), 8, read.payload().length))
                        .isEqualTo(data);
                assertThat(disk.flushes()).isZero();
                disk.releaseFlushes();
                NbdTestClient.Chunk flushed = c.chunk();
                assertThat(flushed.handle()).isEqualTo(2);
                assertThat(flushed.error()).isZero();
                assertThat(disk.flushes()).isEqualTo(1);
            }
        } finally {
            disk.releaseFlushes(); // never leave the flush hanging
        }
    }
}
