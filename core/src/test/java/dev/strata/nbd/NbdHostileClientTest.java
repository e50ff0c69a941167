package dev.strata.nbd;

import static dev.strata.block.nbd.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.drivers.Drivers;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Clients that break the rules: each gets an NBD error or a closed connection, and afterwards the
 * server still serves a well-behaved client, with everything written before intact.
 */
@Timeout(60)
class NbdHostileClientTest {
    static final long SIZE = 4 << 20;

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
        server = new NbdServer();
        server.start(new NbdServer.Unix(dir.resolve("nbd.sock")), 100);
        address = server.boundAddress().orElseThrow();
        server.addExport(new NbdServer.ExportSpec("rw", node, "rw", null, true, List.of(), false, false));
        server.addExport(new NbdServer.ExportSpec("ro", node, "ro", null, false, List.of(), false, false));
        byte[] marker = new byte[4096];
        Arrays.fill(marker, (byte) 0x77);
        node.write(0, marker, 0, marker.length);
    }

    @AfterEach
    void stop() throws IOException {
        server.close();
        graph.close();
    }

    NbdTestClient client(String export, boolean structured) throws IOException {
        NbdTestClient c = NbdTestClient.connect(address).greet();
        if (structured) {
            c.structuredReplies();
        }
        assertThat(c.go(export)).isNull();
        return c;
    }

    /** A fresh client still reads the marker written before the test's misbehaviour. */
    void serverStillServes() throws IOException {
        try (NbdTestClient c = client("rw", false)) {
            c.request(0, CMD_READ, 1, 0, 4096);
            NbdTestClient.Chunk r = c.chunk();
            assertThat(r.error()).isZero();
            byte[] data = c.bytes(4096);
            byte[] marker = new byte[4096];
            Arrays.fill(marker, (byte) 0x77);
            assertThat(data).isEqualTo(marker);
        }
    }

    @Test
    void garbageInTheHandshakeClosesTheConnection() throws IOException {
        SplittableRandom random = new SplittableRandom(1);
        for (int i = 0; i < 20; i++) {
            try (NbdTestClient c = NbdTestClient.connect(address)) {
                c.bytes(18);
                byte[] junk = new byte[1 + random.nextInt(200)];
                random.nextBytes(junk);
                junk[0] = (byte) 0xff; // unknown client flags
                c.send(junk);
                assertThat(c.closedByServer()).isTrue();
            }
        }
        try (NbdTestClient c = NbdTestClient.connect(address).greet()) {
            c.send(new byte[16]); // bad option magic
            assertThat(c.closedByServer()).isTrue();
        }
        serverStillServes();
    }

    @Test
    void unknownAndMalformedOptionsAreRefusedAndTheHandshakeGoesOn() throws IOException {
        try (NbdTestClient c = NbdTestClient.connect(address).greet()) {
            c.option(4242, new byte[] {1, 2, 3});
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_UNSUP);
            c.option(OPT_LIST, new byte[] {1});
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_INVALID);
            c.option(OPT_GO, new byte[] {0, 0, 0, 9, 'x'});
            assertThat(c.optionReply().type()).isEqualTo(REP_ERR_INVALID);
            c.option(OPT_SET_META_CONTEXT, NbdTestClient.nameAndQueries("rw", "base:allocation"));
            assertThat(c.optionReply().type())
                    .as("meta context before structured replies")
                    .isEqualTo(REP_ERR_INVALID);
            NbdTestClient.OptionReply unknown = c.go("nothing");
            assertThat(unknown.type()).isEqualTo(REP_ERR_UNKNOWN);
            assertThat(unknown.text()).isEqualTo("export 'nothing' not present");
            assertThat(c.go("rw")).isNull();
            assertThat(c.size).isEqualTo(SIZE);
        }
        serverStillServes();
    }

    @Test
    void oversizedRequestsGetEinvalAndAnOversizedWriteEndsTheConnection() throws IOException {
        try (NbdTestClient c = client("rw", true)) {
            c.request(0, CMD_READ, 7, 0, MAX_BUFFER + 1L);
            NbdTestClient.Chunk r = c.chunk();
            assertThat(r.type()).isEqualTo(REPLY_TYPE_ERROR);
            assertThat(r.handle()).isEqualTo(7);
            assertThat(r.structuredError()).isEqualTo(EINVAL);
            assertThat(r.message()).isEqualTo("len (33554433 ) is larger than max len (33554432)");
            c.request(0, CMD_WRITE, 8, 0, 0xffffffffL);
            assertThat(c.chunk().structuredError()).isEqualTo(EINVAL);
            assertThat(c.closedByServer()).isTrue();
        }
        serverStillServes();
    }

    /** Every refusal is EINVAL, as qemu-storage-daemon 7.2 sends (see NbdQsdDifferentialTest). */
    @Test
    void outOfRangeReadsAndWritesAndReadOnlyWritesAreRefused() throws IOException {
        try (NbdTestClient c = client("rw", false)) {
            c.request(0, CMD_READ, 1, SIZE - 512, 1024);
            assertThat(c.chunk().error()).isEqualTo(EINVAL);
            c.request(0, CMD_WRITE, 2, SIZE, 512);
            c.send(new byte[512]);
            assertThat(c.chunk().error()).isEqualTo(EINVAL);
            c.request(0, CMD_READ, 3, -1L, 1);
            assertThat(c.chunk().error()).isEqualTo(EINVAL);
            c.request(0, CMD_WRITE_ZEROES, 4, SIZE - 4096, 8192);
            assertThat(c.chunk().error()).isEqualTo(EINVAL);
        }
        try (NbdTestClient c = client("ro", true)) {
            assertThat(c.flags & FLAG_READ_ONLY).isNotZero();
            c.request(0, CMD_WRITE, 5, 0, 4096);
            c.send(new byte[4096]);
            NbdTestClient.Chunk r = c.chunk();
            assertThat(r.structuredError()).isEqualTo(EINVAL);
            assertThat(r.message()).isEqualTo("Export is read-only");
            c.request(0, CMD_TRIM, 6, 0, 4096);
            assertThat(c.chunk().structuredError()).isEqualTo(EINVAL);
            c.request(0, CMD_WRITE_ZEROES, 7, 0, 4096);
            assertThat(c.chunk().structuredError()).isEqualTo(EINVAL);
        }
        serverStillServes();
    }

    @Test
    void unknownCommandsAndFlagsGetEinval() throws IOException {
        try (NbdTestClient c = client("rw", true)) {
            c.request(0, 99, 1, 0, 0);
            NbdTestClient.Chunk r = c.chunk();
            assertThat(r.structuredError()).isEqualTo(EINVAL);
            assertThat(r.message()).isEqualTo("invalid request type (99) received");
            c.request(1 << 9, CMD_FLUSH, 2, 0, 0);
            r = c.chunk();
            assertThat(r.structuredError()).isEqualTo(EINVAL);
            assertThat(r.message()).isEqualTo("unsupported flags for command flush (got 0x200)");
            c.request(0, CMD_BLOCK_STATUS, 3, 0, 4096);
            assertThat(c.chunk().message()).isEqualTo("CMD_BLOCK_STATUS not negotiated");
            c.request(0, CMD_FLUSH, 4, 0, 0);
            r = c.chunk();
            assertThat(r.type())
                    .as("success without data: a simple reply, as QEMU")
                    .isEqualTo(-1);
            assertThat(r.error()).isZero();
        }
        serverStillServes();
    }

    @Test
    void aBadRequestMagicEndsTheConnection() throws IOException {
        try (NbdTestClient c = client("rw", false)) {
            c.send(new byte[REQUEST_HEADER]);
            assertThat(c.closedByServer()).isTrue();
        }
        serverStillServes();
    }

    @Test
    void aDisconnectInTheMiddleOfAWriteLosesNothingWrittenBefore() throws IOException {
        try (NbdTestClient c = client("rw", false)) {
            c.request(0, CMD_WRITE, 1, 0, 1 << 20);
            byte[] part = new byte[1000];
            Arrays.fill(part, (byte) 0x99);
            c.send(part);
        }
        try (NbdTestClient c = client("rw", true)) {
            c.request(0, CMD_READ, 1, 0, 0); // a header alone, then gone
        }
        try (NbdTestClient c = NbdTestClient.connect(address).greet()) {
            c.option(OPT_GO, new byte[] {0, 0}); // half an option
        }
        serverStillServes();
    }

    @Test
    void aHundredConnectionsOpenedAndDroppedLeaveTheServerServing() throws Exception {
        List<NbdTestClient> clients = new ArrayList<>();
        for (int i = 0; i < 100; i++) {
            NbdTestClient c = NbdTestClient.connect(address);
            if (i % 3 == 1) {
                c.greet();
            } else if (i % 3 == 2) {
                c.greet().go("rw");
            }
            clients.add(c);
        }
        for (NbdTestClient c : clients) {
            c.close();
        }
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (server.clientCount() > 0 && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(server.clientCount()).isZero();
        serverStillServes();
    }

    @Test
    void structuredReadsSendHolesAsHolesAndDataAsData() throws IOException {
        try (NbdTestClient c = client("rw", true)) {
            c.request(0, CMD_READ, 9, 0, 1 << 20);
            List<NbdTestClient.Chunk> chunks = c.reply();
            long covered = 0;
            for (NbdTestClient.Chunk ch : chunks) {
                ByteBuffer p = ByteBuffer.wrap(ch.payload());
                long off = p.getLong();
                assertThat(off).isEqualTo(covered);
                covered += ch.type() == REPLY_TYPE_OFFSET_HOLE ? p.getInt() : p.remaining();
            }
            assertThat(covered).isEqualTo(1 << 20);
            assertThat(chunks.getFirst().type()).isEqualTo(REPLY_TYPE_OFFSET_DATA);
            c.request(CMD_FLAG_DF, CMD_READ, 10, 0, 1 << 20);
            chunks = c.reply();
            assertThat(chunks)
                    .singleElement()
                    .satisfies(ch -> assertThat(ch.type()).isEqualTo(REPLY_TYPE_OFFSET_DATA));
        }
    }

    @Test
    void metaContextsAreListedAndSelectedAsQemuDoes() throws Exception {
        server.removeExport("rw", false);
        node.bitmaps().add("b0", SIZE, 65536, false);
        node.bitmaps().add("b1", SIZE, 65536, false);
        server.addExport(new NbdServer.ExportSpec(
                "rw",
                node,
                "rw",
                null,
                true,
                List.of(new NbdServer.NamedBitmap("b0"), new NbdServer.NamedBitmap("b1")),
                true,
                false));
        try (NbdTestClient c = NbdTestClient.connect(address).greet().structuredReplies()) {
            c.option(OPT_LIST_META_CONTEXT, NbdTestClient.nameAndQueries("rw"));
            assertThat(names(c.optionReplies()))
                    .containsExactly(
                            "0 base:allocation",
                            "0 qemu:allocation-depth",
                            "0 qemu:dirty-bitmap:b0",
                            "0 qemu:dirty-bitmap:b1");
            c.option(OPT_LIST_META_CONTEXT, NbdTestClient.nameAndQueries("rw", "qemu:dirty-bitmap:"));
            assertThat(names(c.optionReplies())).containsExactly("0 qemu:dirty-bitmap:b0", "0 qemu:dirty-bitmap:b1");
            assertThat(names(c.setMetaContext("rw", "qemu:dirty-bitmap:b1", "nonsense:x", "base:allocation")))
                    .containsExactly("0 base:allocation", "3 qemu:dirty-bitmap:b1");
            assertThat(c.go("rw")).isNull();
            node.bitmaps().lookup("b1").setDirty(65536, 1);
            c.request(0, CMD_BLOCK_STATUS, 5, 0, 4 * 65536);
            List<NbdTestClient.Chunk> chunks = c.reply();
            assertThat(chunks).hasSize(2);
            ByteBuffer bitmapChunk = ByteBuffer.wrap(chunks.get(1).payload());
            assertThat(bitmapChunk.getInt()).isEqualTo(3);
            long[] runs = new long[6];
            for (int i = 0; i < 6; i++) {
                runs[i] = Integer.toUnsignedLong(bitmapChunk.getInt());
            }
            assertThat(runs).containsExactly(65536, 0, 65536, 1, 2 * 65536, 0);
        }
    }

    private static List<String> names(List<NbdTestClient.OptionReply> replies) {
        List<String> out = new ArrayList<>();
        for (NbdTestClient.OptionReply r : replies) {
            if (r.type() == REP_META_CONTEXT) {
                ByteBuffer b = ByteBuffer.wrap(r.data());
                int id = b.getInt();
                byte[] n = new byte[b.remaining()];
                b.get(n);
                out.add(id + " " + new String(n, java.nio.charset.StandardCharsets.UTF_8));
            }
        }
        return out;
    }
}
