package dev.strata.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Strata's NBD exports driven by the real clients: qemu-io over {@code nbd+unix://} and
 * {@code nbd://127.0.0.1}, qemu-img convert both ways, nbdinfo's list and maps, nbdcopy; and the
 * writes they make counted in the bitmaps against a model (invariant 1 over NBD).
 */
class DaemonNbdInteropTest {
    static final long MiB = 1 << 20;
    static final long SIZE = 64 * MiB;

    @TempDir
    Path dir;

    Daemon daemon;
    QmpClient qmp;
    Path nbdSocket;
    Path image;

    void start(String nbdServer, String... exports) throws Exception {
        image = dir.resolve("disk.raw");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(SIZE);
        }
        nbdSocket = dir.resolve("nbd.sock");
        Path qmpSocket = dir.resolve("qmp.sock");
        List<Daemon.StartupOption> options = new ArrayList<>();
        options.add(new Daemon.Blockdev("driver=file,node-name=file0,filename=" + image));
        options.add(new Daemon.Blockdev("driver=raw,node-name=drive0,file=file0,discard=unmap"));
        options.add(new Daemon.NbdServerOption(nbdServer));
        for (String e : exports) {
            options.add(new Daemon.ExportOption(e));
        }
        options.add(new Daemon.QmpSocket("unix:" + qmpSocket + ",server=on,wait=off"));
        daemon = Daemon.start(options, "test");
        qmp = QmpClient.connect(qmpSocket).negotiate();
    }

    void startUnix() throws Exception {
        start(
                "addr.type=unix,addr.path=" + dir.resolve("nbd.sock"),
                "type=nbd,id=exp0,node-name=drive0,name=drive0,writable=on,description=the disk");
    }

    @AfterEach
    void stop() throws IOException {
        if (qmp != null) {
            qmp.close();
        }
        if (daemon != null) {
            daemon.shutdown();
        }
    }

    String uri(String export) {
        return "nbd+unix:///" + export + "?socket=" + nbdSocket;
    }

    static Map<String, Object> args(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    BlockNode drive0() {
        return daemon.graph().find("drive0").orElseThrow();
    }

    byte[] fileBytes(long offset, int len) throws IOException {
        byte[] b = new byte[len];
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "r")) {
            f.seek(offset);
            f.readFully(b);
        }
        return b;
    }

    @Test
    void qemuIoOverUnixSocketWritesAndReadsPatterns() throws Exception {
        startUnix();
        Interop.qemuIo(
                        "-f",
                        "raw",
                        "-c",
                        "write -P 0xab 0 1M",
                        "-c",
                        "write -P 0xcd 3M 64k",
                        "-c",
                        "write -z 1M 1M",
                        "-c",
                        "read -P 0xab 0 1M",
                        "-c",
                        "read -P 0 1M 1M",
                        "-c",
                        "read -P 0xcd 3M 64k",
                        "-c",
                        "flush",
                        uri("drive0"))
                .assertOk();
        byte[] first = fileBytes(0, (int) MiB);
        byte[] expected = new byte[(int) MiB];
        Arrays.fill(expected, (byte) 0xab);
        assertThat(first).isEqualTo(expected);
        byte[] cd = new byte[65536];
        Arrays.fill(cd, (byte) 0xcd);
        assertThat(fileBytes(3 * MiB, 65536)).isEqualTo(cd);
    }

    @Test
    void qemuIoOverTcpLoopbackWritesAndReadsPatterns() throws Exception {
        // no addr.host: Strata listens on the loopback address
        start("addr.type=inet,addr.port=0", "type=nbd,id=exp0,node-name=drive0,writable=on");
        InetSocketAddress bound =
                (InetSocketAddress) daemon.nbd().boundAddress().orElseThrow();
        assertThat(bound.getAddress().isLoopbackAddress()).isTrue();
        int port = bound.getPort();
        String uri = "nbd://127.0.0.1:" + port + "/drive0";
        Interop.qemuIo("-f", "raw", "-c", "write -P 0x5a 512 128k", "-c", "read -P 0x5a 512 128k", uri)
                .assertOk();
        Interop.qemuIo("-f", "raw", "-c", "read -P 0x5a 512 128k", "-c", "read -P 0 0 512", uri)
                .assertOk();
        byte[] expected = new byte[128 * 1024];
        Arrays.fill(expected, (byte) 0x5a);
        assertThat(fileBytes(512, expected.length)).isEqualTo(expected);
    }

    @Test
    void qemuImgConvertsToAndFromAnExport() throws Exception {
        startUnix();
        Path src = dir.resolve("src.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", src.toString(), "64M").assertOk();
        Interop.qemuIo(
                        "-f",
                        "qcow2",
                        "-c",
                        "write -P 0x11 0 2M",
                        "-c",
                        "write -P 0x22 10M 4M",
                        "-c",
                        "write -P 0x33 63M 1M",
                        src.toString())
                .assertOk();
        Interop.qemuImg("convert", "-n", "-f", "qcow2", "-O", "raw", src.toString(), uri("drive0"))
                .assertOk();
        Interop.qemuImg("compare", "-f", "qcow2", "-F", "raw", src.toString(), image.toString())
                .assertOk();
        Path back = dir.resolve("back.qcow2");
        Interop.qemuImg("convert", "-f", "raw", "-O", "qcow2", uri("drive0"), back.toString())
                .assertOk();
        Interop.qemuImg("compare", src.toString(), back.toString()).assertOk();
    }

    @Test
    void nbdinfoListsTheExports() throws Exception {
        startUnix();
        qmp.ok("block-export-add", args("type", "nbd", "id", "exp1", "node-name", "file0", "name", "raw-file"));
        String out = Interop.run("nbdinfo", "--list", "nbd+unix:///?socket=" + nbdSocket)
                .assertOk()
                .stdout();
        assertThat(out).contains("export=\"drive0\"", "description: the disk", "export=\"raw-file\"");
        assertThat(out).contains("export-size: " + SIZE);
    }

    @Test
    void nbdinfoMapReportsTheNodesAllocation() throws Exception {
        startUnix();
        Interop.qemuIo("-f", "raw", "-c", "write -P 1 0 1M", "-c", "write -P 2 8M 3M", uri("drive0"))
                .assertOk();
        List<long[]> expected = new ArrayList<>();
        for (Extent e : drive0().blockStatus(0, SIZE)) {
            addRun(expected, e.offset(), e.length(), e.kind() == Extent.Kind.DATA ? 0 : 3);
        }
        List<long[]> reported =
                map(Interop.run("nbdinfo", "--map", uri("drive0")).assertOk().stdout());
        assertThat(text(reported)).containsExactlyElementsOf(text(expected));
        assertThat(reported).anySatisfy(r -> assertThat(r[2]).isZero());
    }

    @Test
    void nbdinfoMapOfTheDirtyBitmapReportsExactlyItsBits() throws Exception {
        startUnix();
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "bitmap0", "granularity", 65536));
        Interop.qemuIo(
                        "-f",
                        "raw",
                        "-c",
                        "write -P 1 0 1k",
                        "-c",
                        "write -P 2 200k 300k",
                        "-c",
                        "write -z 10M 64k",
                        "-c",
                        "discard 20M 1M",
                        "-c",
                        "write -P 3 63M 4k",
                        uri("drive0"))
                .assertOk();
        qmp.ok("block-dirty-bitmap-disable", args("node", "drive0", "name", "bitmap0"));
        qmp.ok(
                "block-export-add",
                args(
                        "type",
                        "nbd",
                        "id",
                        "pull",
                        "node-name",
                        "drive0",
                        "name",
                        "pull",
                        "bitmaps",
                        List.of("bitmap0")));
        assertThat(QmpClient.errorOf(
                        qmp.execute("block-dirty-bitmap-clear", args("node", "drive0", "name", "bitmap0"))))
                .isEqualTo(
                        "GenericError: Bitmap 'bitmap0' is currently in use by another operation and cannot be used");

        DirtyBitmap bitmap = drive0().bitmaps().lookup("bitmap0");
        List<long[]> expected = new ArrayList<>();
        for (long pos = 0; pos < SIZE; ) {
            boolean dirty = bitmap.isDirty(pos);
            long next = dirty ? bitmap.nextClean(pos) : bitmap.nextDirty(pos);
            next = next < 0 ? SIZE : Math.min(next, SIZE);
            addRun(expected, pos, next - pos, dirty ? 1 : 0);
            pos = next;
        }
        assertThat(expected).hasSizeGreaterThan(4);
        String out = Interop.run("nbdinfo", "--map=qemu:dirty-bitmap:bitmap0", uri("pull"))
                .assertOk()
                .stdout();
        assertThat(text(map(out))).containsExactlyElementsOf(text(expected));

        qmp.ok("block-export-del", args("id", "pull"));
        qmp.ok("block-dirty-bitmap-clear", args("node", "drive0", "name", "bitmap0"));
    }

    @Test
    void nbdcopyCopiesAnExportByteExact() throws Exception {
        startUnix();
        SplittableRandom random = new SplittableRandom(7);
        byte[] data = new byte[(int) (3 * MiB)];
        random.nextBytes(data);
        Path source = dir.resolve("random.raw");
        try (RandomAccessFile f = new RandomAccessFile(source.toFile(), "rw")) {
            f.setLength(SIZE);
            f.seek(5 * MiB + 512);
            f.write(data);
        }
        Interop.run("nbdcopy", source.toString(), uri("drive0")).assertOk();
        Path copy = dir.resolve("copy.raw");
        Interop.run("nbdcopy", uri("drive0"), copy.toString()).assertOk();
        assertThat(Files.size(copy)).isEqualTo(SIZE);
        assertThat(Files.mismatch(copy, source)).isEqualTo(-1L);
        assertThat(Files.mismatch(image, source)).isEqualTo(-1L);
    }

    @Test
    void writesOverNbdAreTrackedExactlyAsTheModelSays() throws Exception {
        startUnix();
        long granularity = 65536;
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "bitmap0", "granularity", granularity));
        BitmapModel model = new BitmapModel(SIZE, granularity);
        SplittableRandom random = new SplittableRandom(20261127);
        List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
        for (int i = 0; i < 60; i++) {
            long len = 512L * (1 + random.nextInt(600));
            long off = 512L * random.nextLong((SIZE - len) / 512);
            String op = switch (random.nextInt(3)) {
                case 0 -> "write -P " + (i & 0xff) + " " + off + " " + len;
                case 1 -> "write -z " + off + " " + len;
                default -> "discard " + off + " " + len;
            };
            cmd.add("-c");
            cmd.add(op);
            model.write(off, len);
        }
        cmd.add(uri("drive0"));
        Interop.run(cmd).assertOk();
        @SuppressWarnings("unchecked")
        Map<String, Object> sha = (Map<String, Object>)
                qmp.ok("x-debug-block-dirty-bitmap-sha256", args("node", "drive0", "name", "bitmap0"));
        assertThat(sha.get("sha256")).isEqualTo(model.sha256());
        assertThat(drive0().bitmaps().lookup("bitmap0").count()).isEqualTo(model.count());
    }

    @Test
    void concurrentClientsWriteTheirOwnQuartersAndEveryWriteIsTracked() throws Exception {
        startUnix();
        long granularity = 4096;
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "bitmap0", "granularity", granularity));
        BitmapModel model = new BitmapModel(SIZE, granularity);
        long quarter = SIZE / 4;
        List<Process> clients = new ArrayList<>();
        for (int c = 0; c < 4; c++) {
            SplittableRandom random = new SplittableRandom(100 + c);
            List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "raw"));
            for (int i = 0; i < 40; i++) {
                long len = 512L * (1 + random.nextInt(256));
                long off = c * quarter + 512L * random.nextLong((quarter - len) / 512);
                cmd.addAll(List.of("-c", "aio_write -P " + (c + 1) + " " + off + " " + len));
                model.write(off, len);
            }
            cmd.addAll(List.of("-c", "aio_flush", uri("drive0")));
            clients.add(new ProcessBuilder(cmd).redirectErrorStream(true).start());
        }
        for (Process p : clients) {
            String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            assertThat(p.waitFor()).as(out).isZero();
        }
        assertThat(drive0().bitmaps().lookup("bitmap0").count()).isEqualTo(model.count());
        assertThat(drive0().bitmaps().lookup("bitmap0").sha256()).isEqualTo(model.sha256());
        byte[] disk = Files.readAllBytes(image);
        for (int c = 0; c < 4; c++) {
            for (long pos = c * quarter; pos < (c + 1) * quarter; pos += granularity) {
                byte b = disk[(int) pos];
                assertThat(b == 0 || b == c + 1)
                        .as("byte at %d written by client %d", pos, c + 1)
                        .isTrue();
            }
        }
    }

    private static void addRun(List<long[]> runs, long offset, long length, long flags) {
        if (!runs.isEmpty() && runs.getLast()[2] == flags) {
            runs.getLast()[1] += length;
        } else {
            runs.add(new long[] {offset, length, flags});
        }
    }

    private static List<String> text(List<long[]> runs) {
        return runs.stream().map(r -> r[0] + " " + r[1] + " " + r[2]).toList();
    }

    /** nbdinfo --map's lines as (offset, length, flags), adjacent equal runs merged. */
    private static List<long[]> map(String out) {
        List<long[]> runs = new ArrayList<>();
        for (String line : out.split("\n")) {
            String[] f = line.trim().split("\\s+");
            if (f.length >= 3) {
                addRun(runs, Long.parseLong(f[0]), Long.parseLong(f[1]), Long.parseLong(f[2]));
            }
        }
        return runs;
    }
}
