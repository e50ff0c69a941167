package dev.strata.nbd;

import static dev.strata.block.nbd.NbdProtocol.*;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.daemon.Daemon;
import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The same raw NBD conversation, option by option and request by request, held with
 * qemu-storage-daemon 7.2 and with Strata over the same exports: every reply (type, flags, data,
 * error number and message) must be equal, except the lines listed in {@link #KNOWN}, each with
 * its reason. A second part compares what nbdinfo prints (list and maps) for both servers.
 */
class NbdQsdDifferentialTest {
    static final long MiB = 1 << 20;

    /** Transcript lines where Strata differs on purpose: prefix of the line, and why. */
    static final Map<String, String> KNOWN = Map.of();

    @TempDir
    Path qemuDir;

    @TempDir
    Path strataDir;

    Process qsd;
    Daemon strata;

    @AfterEach
    void stop() throws InterruptedException {
        if (qsd != null) {
            qsd.destroy();
            if (!qsd.waitFor(10, TimeUnit.SECONDS)) {
                qsd.destroyForcibly();
            }
        }
        if (strata != null) {
            strata.shutdown();
        }
    }

    static void images(Path dir) throws Exception {
        for (String name : List.of("a.raw", "b.raw")) {
            try (RandomAccessFile f = new RandomAccessFile(dir.resolve(name).toFile(), "rw")) {
                f.setLength(4 * MiB);
                f.seek(MiB);
                f.write(new byte[65536]);
                f.seek(MiB);
                f.write(1);
            }
        }
    }

    static List<String> options(Path dir) {
        return List.of(
                "--blockdev",
                "driver=file,node-name=fa,filename=" + dir.resolve("a.raw"),
                "--blockdev",
                "driver=raw,node-name=drive0,file=fa",
                "--blockdev",
                "driver=file,node-name=fb,filename=" + dir.resolve("b.raw"),
                "--blockdev",
                "driver=raw,node-name=drive1,file=fb",
                "--nbd-server",
                "addr.type=unix,addr.path=" + dir.resolve("nbd.sock"),
                "--export",
                "type=nbd,id=rw,node-name=drive0,name=rw,writable=on,description=the disk",
                "--chardev",
                "socket,id=m,path=" + dir.resolve("qmp.sock") + ",server=on,wait=off",
                "--monitor",
                "chardev=m");
    }

    static void exportBitmaps(Path dir) throws IOException {
        try (QmpClient qmp = QmpClient.connect(dir.resolve("qmp.sock")).negotiate()) {
            qmp.ok("block-dirty-bitmap-add", Map.of("node", "drive1", "name", "b0", "disabled", true));
            qmp.ok("block-dirty-bitmap-add", Map.of("node", "drive1", "name", "b1", "disabled", true));
            qmp.ok(
                    "block-export-add",
                    Map.of(
                            "type",
                            "nbd",
                            "id",
                            "ro",
                            "node-name",
                            "drive1",
                            "name",
                            "ro",
                            "bitmaps",
                            List.of("b0", "b1"),
                            "allocation-depth",
                            true));
        }
    }

    void startBoth() throws Exception {
        Interop.require("qemu-storage-daemon");
        images(qemuDir);
        images(strataDir);
        List<String> cmd = new ArrayList<>(List.of("qemu-storage-daemon"));
        cmd.addAll(options(qemuDir));
        qsd = new ProcessBuilder(cmd)
                .redirectErrorStream(true)
                .redirectOutput(qemuDir.resolve("qsd.log").toFile())
                .start();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (!(Files.exists(qemuDir.resolve("qmp.sock")) && Files.exists(qemuDir.resolve("nbd.sock")))) {
            if (System.nanoTime() > deadline || !qsd.isAlive()) {
                throw new AssertionError(
                        "qemu-storage-daemon did not start: " + Files.readString(qemuDir.resolve("qsd.log")));
            }
            Thread.sleep(20);
        }
        List<String> args = options(strataDir);
        List<Daemon.StartupOption> opts = new ArrayList<>();
        for (int i = 0; i < args.size(); i += 2) {
            String v = args.get(i + 1);
            opts.add(
                    switch (args.get(i)) {
                        case "--blockdev" -> new Daemon.Blockdev(v);
                        case "--nbd-server" -> new Daemon.NbdServerOption(v);
                        case "--export" -> new Daemon.ExportOption(v);
                        case "--chardev" -> new Daemon.Chardev(v);
                        default -> new Daemon.Monitor(v);
                    });
        }
        strata = Daemon.start(opts, "test");
        exportBitmaps(qemuDir);
        exportBitmaps(strataDir);
    }

    /** One conversation; returns its transcript, one line per reply. */
    @FunctionalInterface
    interface Conversation {
        void run(NbdTestClient c, List<String> out) throws IOException;
    }

    static List<String> talk(Path dir, Conversation conversation) throws IOException {
        List<String> out = new ArrayList<>();
        try (NbdTestClient c = NbdTestClient.connect(UnixDomainSocketAddress.of(dir.resolve("nbd.sock")))) {
            c.greet();
            try {
                conversation.run(c, out);
            } catch (IOException e) {
                out.add("connection ended: " + (c.closedByServer() ? "closed" : e.getMessage()));
            }
        }
        return out;
    }

    static void option(NbdTestClient c, List<String> out, String label, int option, byte[] data) throws IOException {
        c.option(option, data);
        for (NbdTestClient.OptionReply r : c.optionReplies()) {
            String data1 = r.type() < 0 ? "'" + r.text() + "'" : HexFormat.of().formatHex(r.data());
            out.add(label + ": type 0x" + Integer.toHexString(r.type()) + " " + data1);
        }
    }

    static byte[] info(String name, int... requests) {
        byte[] n = name.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(6 + n.length + 2 * requests.length)
                .putInt(n.length)
                .put(n)
                .putShort((short) requests.length);
        for (int r : requests) {
            b.putShort((short) r);
        }
        return b.array();
    }

    static void request(NbdTestClient c, List<String> out, String label, int flags, int type, long offset, long len)
            throws IOException {
        request(c, out, label, flags, type, offset, len, null);
    }

    static void request(
            NbdTestClient c, List<String> out, String label, int flags, int type, long offset, long len, byte[] payload)
            throws IOException {
        c.request(flags, type, 42, offset, len);
        if (payload != null) {
            c.send(payload);
        }
        for (NbdTestClient.Chunk ch : c.reply()) {
            String what = switch (ch.type()) {
                case -1 -> "simple error " + ch.error();
                case REPLY_TYPE_ERROR -> "error " + ch.structuredError() + " '" + ch.message() + "'";
                default -> "chunk type " + ch.type() + " " + digest(ch.payload());
            };
            out.add(label + ": flags " + ch.flags() + " " + what);
            if (ch.type() == -1 && ch.error() == 0 && type == CMD_READ) {
                c.bytes((int) len);
            }
        }
    }

    /** Short payloads in hex, long ones as their length and hash, so a transcript stays readable. */
    static String digest(byte[] payload) {
        if (payload.length <= 64) {
            return HexFormat.of().formatHex(payload);
        }
        return payload.length + " bytes, hash " + java.util.Arrays.hashCode(payload);
    }

    static final Conversation HANDSHAKE = (c, out) -> {
        option(c, out, "list", OPT_LIST, new byte[0]);
        option(c, out, "list with data", OPT_LIST, new byte[] {1});
        option(c, out, "unknown option", 77, new byte[] {1, 2});
        option(c, out, "starttls", OPT_STARTTLS, new byte[0]);
        option(c, out, "info rw", OPT_INFO, info("rw", INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE));
        option(c, out, "info ro", OPT_INFO, info("ro"));
        option(c, out, "info missing", OPT_INFO, info("missing"));
        option(c, out, "meta before structured", OPT_LIST_META_CONTEXT, NbdTestClient.nameAndQueries("ro"));
        option(c, out, "structured", OPT_STRUCTURED_REPLY, new byte[0]);
        option(c, out, "structured again", OPT_STRUCTURED_REPLY, new byte[0]);
        option(c, out, "list meta all", OPT_LIST_META_CONTEXT, NbdTestClient.nameAndQueries("ro"));
        option(c, out, "list meta qemu:", OPT_LIST_META_CONTEXT, NbdTestClient.nameAndQueries("ro", "qemu:"));
        option(c, out, "list meta base:", OPT_LIST_META_CONTEXT, NbdTestClient.nameAndQueries("ro", "base:"));
        option(
                c,
                out,
                "list meta bitmaps",
                OPT_LIST_META_CONTEXT,
                NbdTestClient.nameAndQueries("ro", "qemu:dirty-bitmap:"));
        option(c, out, "list meta rw", OPT_LIST_META_CONTEXT, NbdTestClient.nameAndQueries("rw"));
        option(c, out, "set meta missing export", OPT_SET_META_CONTEXT, NbdTestClient.nameAndQueries("x", "base:"));
        option(
                c,
                out,
                "set meta",
                OPT_SET_META_CONTEXT,
                NbdTestClient.nameAndQueries(
                        "ro", "qemu:dirty-bitmap:b1", "base:allocation", "qemu:allocation-depth", "nope", "qemu:"));
        option(c, out, "go", OPT_GO, info("ro", INFO_BLOCK_SIZE));
        c.structured = true;
        request(c, out, "block status", 0, CMD_BLOCK_STATUS, 0, 4 * MiB);
        request(c, out, "block status one", CMD_FLAG_REQ_ONE, CMD_BLOCK_STATUS, 0, 4 * MiB);
        request(c, out, "block status zero length", 0, CMD_BLOCK_STATUS, 0, 0);
        request(c, out, "read", 0, CMD_READ, MiB - 4096, 8192);
        request(c, out, "read df", CMD_FLAG_DF, CMD_READ, MiB - 512, 1024);
        request(c, out, "read past end", 0, CMD_READ, 4 * MiB - 512, 1024);
        request(c, out, "read too big", 0, CMD_READ, 0, 64 * MiB);
        request(c, out, "write read-only", 0, CMD_WRITE, 0, 512, new byte[512]);
        request(c, out, "trim read-only", 0, CMD_TRIM, 0, 512);
        request(c, out, "zero read-only", 0, CMD_WRITE_ZEROES, 0, 512);
        request(c, out, "unknown command", 0, 42, 0, 0);
        request(c, out, "bad flags", 1 << 7, CMD_FLUSH, 0, 0);
        request(c, out, "flush", 0, CMD_FLUSH, 0, 0);
        request(c, out, "cache", 0, CMD_CACHE, 0, 4096);
    };

    static final Conversation SIMPLE = (c, out) -> {
        option(c, out, "go rw", OPT_GO, info("rw"));
        request(c, out, "write", CMD_FLAG_FUA, CMD_WRITE, 4096, 512, new byte[512]);
        request(c, out, "write past end", 0, CMD_WRITE, 4 * MiB, 512, new byte[512]);
        request(c, out, "zero past end", 0, CMD_WRITE_ZEROES, 4 * MiB - 512, 1024);
        request(c, out, "zero", CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO, CMD_WRITE_ZEROES, 0, 4096);
        request(c, out, "trim", CMD_FLAG_FUA, CMD_TRIM, 8192, 4096);
        request(c, out, "read", 0, CMD_READ, 0, 4096);
        request(c, out, "read df without structured", CMD_FLAG_DF, CMD_READ, 0, 512);
        request(c, out, "block status without structured", 0, CMD_BLOCK_STATUS, 0, 512);
        request(c, out, "write too big", 0, CMD_WRITE, 0, 33 * MiB);
    };

    static final Conversation EDGES = (c, out) -> {
        option(c, out, "set before structured", OPT_SET_META_CONTEXT, NbdTestClient.nameAndQueries("rw", "base:"));
        option(c, out, "info long name", OPT_INFO, info("x".repeat(5000)));
        option(c, out, "info trailing", OPT_INFO, java.util.Arrays.copyOf(info("rw"), 9));
        option(c, out, "structured with data", OPT_STRUCTURED_REPLY, new byte[] {0});
        option(c, out, "structured", OPT_STRUCTURED_REPLY, new byte[0]);
        option(c, out, "set on ro", OPT_SET_META_CONTEXT, NbdTestClient.nameAndQueries("ro", "base:allocation"));
        option(c, out, "set meta nothing", OPT_SET_META_CONTEXT, NbdTestClient.nameAndQueries("rw"));
        option(c, out, "set base: only", OPT_SET_META_CONTEXT, NbdTestClient.nameAndQueries("rw", "base:"));
        option(
                c,
                out,
                "set twice",
                OPT_SET_META_CONTEXT,
                NbdTestClient.nameAndQueries("rw", "base:allocation", "base:allocation"));
        option(c, out, "go rw", OPT_GO, info("rw", INFO_NAME));
        c.structured = true;
        request(c, out, "write fua", CMD_FLAG_FUA, CMD_WRITE, 0, 4096, new byte[4096]);
        request(c, out, "zero df", CMD_FLAG_DF, CMD_WRITE_ZEROES, 0, 512);
        request(c, out, "trim", 0, CMD_TRIM, 2 * MiB, 65536);
        request(c, out, "read nothing", 0, CMD_READ, 0, 0);
        request(c, out, "status past end", 0, CMD_BLOCK_STATUS, 4 * MiB, 1);
        request(c, out, "status over end", 0, CMD_BLOCK_STATUS, 4 * MiB - 512, 1024);
        request(c, out, "status", 0, CMD_BLOCK_STATUS, 0, 4 * MiB);
        request(c, out, "status middle", 0, CMD_BLOCK_STATUS, MiB + 100, 5000);
        request(c, out, "read holes", 0, CMD_READ, 0, 2 * MiB);
        request(c, out, "cache past end", 0, CMD_CACHE, 4 * MiB, 512);
        c.request(0, CMD_DISC, 1, 0, 0);
        out.add("disc: " + (c.closedByServer() ? "closed" : "open"));
    };

    static final Conversation ABORT = (c, out) -> {
        option(c, out, "abort", OPT_ABORT, new byte[0]);
        out.add("after abort: " + (c.closedByServer() ? "closed" : "open"));
    };

    static final Conversation BAD_START = (c, out) -> {
        option(c, out, "go missing", OPT_GO, info("nothing"));
        option(c, out, "go short", OPT_GO, new byte[] {0, 0, 0, 9, 'x'});
        c.send(ByteBuffer.allocate(16)
                .putLong(0x1234)
                .putInt(OPT_LIST)
                .putInt(0)
                .flip());
        out.add("bad magic: " + (c.closedByServer() ? "closed" : "open"));
    };

    @Test
    void rawConversationsGetTheSameReplies() throws Exception {
        startBoth();
        List<String> diffs = new ArrayList<>();
        for (Conversation conversation : List.of(HANDSHAKE, SIMPLE, EDGES, ABORT, BAD_START)) {
            List<String> q = talk(qemuDir, conversation);
            List<String> s = talk(strataDir, conversation);
            for (int i = 0; i < Math.max(q.size(), s.size()); i++) {
                String ql = i < q.size() ? q.get(i) : "<none>";
                String sl = i < s.size() ? s.get(i) : "<none>";
                if (!ql.equals(sl) && KNOWN.keySet().stream().noneMatch(ql::startsWith)) {
                    diffs.add("qemu:   " + ql + "\nstrata: " + sl);
                }
            }
        }
        assertThat(diffs).isEmpty();
    }

    @Test
    void nbdinfoPrintsTheSameForBoth() throws Exception {
        startBoth();
        for (String[] args : List.of(
                new String[] {"--list", "--json", "nbd+unix:///?socket=@"},
                new String[] {"--map", "nbd+unix:///ro?socket=@"},
                new String[] {"--map=qemu:allocation-depth", "nbd+unix:///ro?socket=@"},
                new String[] {"--map=qemu:dirty-bitmap:b0", "nbd+unix:///ro?socket=@"},
                new String[] {"--map", "--totals", "nbd+unix:///rw?socket=@"})) {
            assertThat(nbdinfo(strataDir, args)).as(String.join(" ", args)).isEqualTo(nbdinfo(qemuDir, args));
        }
    }

    static String nbdinfo(Path dir, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("nbdinfo"));
        String sock = dir.resolve("nbd.sock").toString();
        for (String a : args) {
            cmd.add(a.replace("@", sock));
        }
        return Interop.run(cmd).assertOk().stdout().replace(sock, "SOCKET");
    }
}
