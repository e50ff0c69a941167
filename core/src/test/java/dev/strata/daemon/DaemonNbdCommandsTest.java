package dev.strata.daemon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The NBD server and export commands over QMP: success replies, QEMU's refusals (texts recorded
 * from qemu-storage-daemon 7.2), the busy state of exported bitmaps, the deletion events, and the
 * {@code --nbd-server}/{@code --export} start-up options.
 */
class DaemonNbdCommandsTest {
    static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    Daemon daemon;
    QmpClient qmp;
    Path nbdSocket;

    @BeforeEach
    void start() throws Exception {
        Path a = dir.resolve("a.raw");
        try (RandomAccessFile f = new RandomAccessFile(a.toFile(), "rw")) {
            f.setLength(16 * MiB);
        }
        Path r = dir.resolve("r.raw");
        try (RandomAccessFile f = new RandomAccessFile(r.toFile(), "rw")) {
            f.setLength(MiB);
        }
        nbdSocket = dir.resolve("nbd.sock");
        Path socket = dir.resolve("qmp.sock");
        daemon = Daemon.start(
                List.of(
                        new Daemon.Blockdev("driver=file,node-name=file0,filename=" + a),
                        new Daemon.Blockdev("driver=raw,node-name=drive0,file=file0"),
                        new Daemon.Blockdev(
                                "driver=raw,node-name=ro0,read-only=on,file.driver=file,file.filename=" + r),
                        new Daemon.QmpSocket("unix:" + socket + ",server=on,wait=off")),
                "test");
        qmp = QmpClient.connect(socket).negotiate();
    }

    @AfterEach
    void stop() throws IOException {
        qmp.close();
        daemon.shutdown();
    }

    static Map<String, Object> args(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    Map<String, Object> unixAddr() {
        return args("type", "unix", "data", args("path", nbdSocket.toString()));
    }

    String error(String command, Map<String, Object> arguments) throws IOException {
        return qmp.error(command, arguments);
    }

    @Test
    void serverStartsAndStopsOnce() throws IOException {
        assertThat(error("nbd-server-stop", null)).isEqualTo("GenericError: NBD server not running");
        qmp.ok("nbd-server-start", args("addr", unixAddr()));
        assertThat(Files.exists(nbdSocket)).isTrue();
        assertThat(error("nbd-server-start", args("addr", unixAddr())))
                .isEqualTo("GenericError: NBD server already running");
        qmp.ok("nbd-server-stop", null);
        assertThat(error("nbd-server-stop", null)).isEqualTo("GenericError: NBD server not running");
        assertThat(error("nbd-server-start", args("addr", args("type", "unix"))))
                .isEqualTo("GenericError: Parameter 'addr.data' is missing");
        assertThat(error(
                        "nbd-server-start",
                        args("addr", args("type", "unix", "data", args("path", "/nonexistent/dir/x.sock")))))
                .isEqualTo("GenericError: Failed to bind socket to /nonexistent/dir/x.sock: No such file or directory");
        assertThat(error(
                        "nbd-server-start",
                        args("addr", args("type", "inet", "data", args("host", "127.0.0.1", "port", "x")))))
                .isEqualTo("GenericError: address resolution failed for 127.0.0.1:x: Servname not supported for"
                        + " ai_socktype");
        assertThat(error(
                        "nbd-server-start",
                        args(
                                "addr",
                                args("type", "inet", "data", args("host", "127.0.0.1", "port", "0")),
                                "tls-creds",
                                "t")))
                .isEqualTo("GenericError: No TLS credentials with id 't'");
    }

    @Test
    void exportsAreAddedQueriedAndDeletedWithQemusChecks() throws IOException {
        Map<String, Object> exp = args("type", "nbd", "id", "exp0", "node-name", "drive0");
        assertThat(error("block-export-add", exp)).isEqualTo("GenericError: NBD server not running");
        qmp.ok("nbd-server-start", args("addr", unixAddr()));
        assertThat(error("block-export-add", args("type", "nbd", "id", "0bad", "node-name", "drive0")))
                .isEqualTo("GenericError: Invalid block export id");
        assertThat(error("block-export-add", args("type", "nbd", "id", "e", "node-name", "nothing")))
                .isEqualTo("GenericError: Cannot find device='' nor node-name='nothing'");
        assertThat(error("block-export-add", args("type", "nbd", "id", "e", "node-name", "ro0", "writable", true)))
                .isEqualTo("GenericError: Cannot export read-only node as writable");
        qmp.ok("block-export-add", exp);
        assertThat(error("block-export-add", exp)).isEqualTo("GenericError: Block export id 'exp0' is already in use");
        assertThat(error("block-export-add", args("type", "nbd", "id", "exp1", "node-name", "drive0")))
                .isEqualTo("GenericError: NBD server already has export named 'drive0'");
        assertThat(error(
                        "block-export-add",
                        args("type", "nbd", "id", "exp1", "node-name", "drive0", "name", "x", "bitmaps", List.of("b"))))
                .isEqualTo("GenericError: Bitmap 'b' is not found");
        assertThat(qmp.ok("query-block-exports", null))
                .isEqualTo(List.of(Map.of("type", "nbd", "id", "exp0", "node-name", "drive0", "shutting-down", false)));
        assertThat(error("blockdev-del", args("node-name", "drive0"))).isEqualTo("GenericError: Node drive0 is in use");
        qmp.ok("block-export-del", args("id", "exp0"));
        assertThat(qmp.events(1, 2000)).anySatisfy(e -> {
            assertThat(e.get("event")).isEqualTo("BLOCK_EXPORT_DELETED");
            assertThat(e.get("data")).isEqualTo(Map.of("id", "exp0"));
        });
        assertThat(error("block-export-del", args("id", "exp0"))).isEqualTo("GenericError: Export 'exp0' is not found");
        assertThat(qmp.ok("query-block-exports", null)).isEqualTo(List.of());
        qmp.ok("blockdev-del", args("node-name", "drive0"));
    }

    @Test
    void anExportedBitmapIsBusyUntilTheExportGoes() throws IOException {
        qmp.ok("nbd-server-start", args("addr", unixAddr()));
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "bitmap0"));
        assertThat(error(
                        "block-export-add",
                        args("type", "nbd", "id", "e", "node-name", "drive0", "bitmaps", List.of("bitmap0"))))
                .isEqualTo("GenericError: Enabled bitmap 'bitmap0' incompatible with readonly export");
        qmp.ok(
                "block-export-add",
                args(
                        "type",
                        "nbd",
                        "id",
                        "e",
                        "node-name",
                        "drive0",
                        "writable",
                        true,
                        "bitmaps",
                        List.of(args("node", "drive0", "name", "bitmap0"))));
        String busy = "GenericError: Bitmap 'bitmap0' is currently in use by another operation and cannot be used";
        assertThat(error("block-dirty-bitmap-remove", args("node", "drive0", "name", "bitmap0")))
                .isEqualTo(busy);
        assertThat(error("block-dirty-bitmap-clear", args("node", "drive0", "name", "bitmap0")))
                .isEqualTo(busy);
        assertThat(error(
                        "block-export-add",
                        args(
                                "type",
                                "nbd",
                                "id",
                                "f",
                                "node-name",
                                "drive0",
                                "name",
                                "f",
                                "writable",
                                true,
                                "bitmaps",
                                List.of("bitmap0"))))
                .isEqualTo(busy);
        qmp.ok("nbd-server-stop", null);
        qmp.ok("block-dirty-bitmap-remove", args("node", "drive0", "name", "bitmap0"));
    }

    @Test
    void theDeprecatedCommandsStillWork() throws Exception {
        assertThat(error("nbd-server-add", args("device", "drive0"))).isEqualTo("GenericError: NBD server not running");
        qmp.ok("nbd-server-start", args("addr", unixAddr()));
        assertThat(error("nbd-server-add", args("device", "nothing")))
                .isEqualTo("GenericError: Cannot find device='nothing' nor node-name='nothing'");
        assertThat(error("nbd-server-add", args("device", "drive0", "name", "with space")))
                .isEqualTo("GenericError: Invalid block export id");
        qmp.ok("nbd-server-add", args("device", "drive0", "writable", true));
        qmp.ok("nbd-server-add", args("device", "ro0", "writable", true));
        assertThat(Interop.run("nbdinfo", "nbd+unix:///ro0?socket=" + nbdSocket)
                        .assertOk()
                        .stdout())
                .contains("is_read_only: true");
        assertThat(Interop.run("nbdinfo", "nbd+unix:///drive0?socket=" + nbdSocket)
                        .assertOk()
                        .stdout())
                .contains("is_read_only: false");
        qmp.ok("nbd-server-remove", args("name", "drive0"));
        assertThat(error("nbd-server-remove", args("name", "drive0")))
                .isEqualTo("GenericError: Export 'drive0' is not found");
    }

    @Test
    void safeRemovalWaitsForClientsAndHardRemovalDropsThem() throws Exception {
        qmp.ok("nbd-server-start", args("addr", unixAddr()));
        qmp.ok("block-export-add", args("type", "nbd", "id", "e", "node-name", "drive0"));
        Interop.require("qemu-io");
        Process holder = new ProcessBuilder("qemu-io", "-f", "raw", "-r", "nbd+unix:///drive0?socket=" + nbdSocket)
                .redirectErrorStream(true)
                .start();
        try {
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (daemon.nbd().export("e").orElseThrow().clientCount() == 0 && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            assertThat(error("block-export-del", args("id", "e"))).isEqualTo("GenericError: export 'e' still in use");
            qmp.ok("block-export-del", args("id", "e", "mode", "hard"));
            assertThat(qmp.ok("query-block-exports", null)).isEqualTo(List.of());
        } finally {
            holder.destroy();
        }
    }

    @Test
    void startupOptionsStartTheServerAndExport() throws Exception {
        Path b = dir.resolve("b.raw");
        try (RandomAccessFile f = new RandomAccessFile(b.toFile(), "rw")) {
            f.setLength(MiB);
        }
        Path sock = dir.resolve("nbd2.sock");
        Daemon d = Daemon.start(
                List.of(
                        new Daemon.Blockdev("driver=file,node-name=f,filename=" + b),
                        new Daemon.NbdServerOption("addr.type=unix,addr.path=" + sock + ",max-connections=4"),
                        new Daemon.ExportOption("type=nbd,id=x,node-name=f,name=disk,writable=on")),
                "test");
        try {
            String out = Interop.run("nbdinfo", "nbd+unix:///disk?socket=" + sock)
                    .assertOk()
                    .stdout();
            assertThat(out).contains("export-size: 1048576", "is_read_only: false");
        } finally {
            d.shutdown();
        }
        assertThat(Files.exists(sock)).isFalse();
        assertThatThrownBy(
                        () -> Daemon.start(List.of(new Daemon.ExportOption("type=nbd,id=x,node-name=nothing")), "test"))
                .hasMessage("--export type=nbd,id=x,node-name=nothing: Cannot find device='' nor node-name='nothing'");
        assertThatThrownBy(() -> Daemon.start(List.of(new Daemon.NbdServerOption("addr.type=unix")), "test"))
                .hasMessageStartingWith("--nbd-server addr.type=unix: Parameter 'addr.path' is missing");
    }
}
