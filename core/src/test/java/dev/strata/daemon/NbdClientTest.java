package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.Main;
import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The nbd protocol driver against qemu-storage-daemon's NBD server: a disk served elsewhere read,
 * written and backed up by Strata, through blockdev-add options and through QEMU's NBD filenames,
 * with QEMU's tools judging the results.
 */
class NbdClientTest extends QsdSandboxes {
    private static int strataImg(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        String[] all = new String[args.length + 1];
        all[0] = "img";
        System.arraycopy(args, 0, all, 1, args.length);
        int exit;
        try (PrintWriter o = new PrintWriter(out);
                PrintWriter e = new PrintWriter(err)) {
            exit = Main.run(o, e, all);
        }
        assertThat(exit).as("strata img %s: %s%s", List.of(args), out, err).isZero();
        return exit;
    }

    @Test
    void aDiskServedByQemuIsReadWrittenAndBackedUpThroughTheNbdDriver() throws Exception {
        Interop.require("qemu-storage-daemon", "qemu-img", "qemu-io");
        Path disk = qemuDir.resolve("served.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", disk.toString(), "32M").assertOk();
        Interop.qemuIo("-c", "write -P 0x3c 1M 3M", "-c", "write -P 0x7e 20M 64k", disk.toString())
                .assertOk();
        Path nbd = qemuDir.resolve("nbd.sock");
        qsd = QsdDifferentialTest.startQsd(
                List.of(
                        "--blockdev",
                        "driver=qcow2,node-name=served,file.driver=file,file.filename=" + disk,
                        "--nbd-server",
                        "addr.type=unix,addr.path=" + nbd,
                        "--export",
                        "type=nbd,id=e,node-name=served,name=served,writable=on"),
                qemuDir);

        // strata img through QEMU's NBD filenames, both forms
        for (String name : List.of("nbd+unix:///served?socket=" + nbd, "nbd:unix:" + nbd + ":exportname=served")) {
            Path copy = strataDir.resolve("copy.qcow2");
            strataImg("convert", "-f", "raw", "-O", "qcow2", name, copy.toString());
            Interop.Result cmp = Interop.qemuImg("compare", "-U", disk.toString(), copy.toString());
            assertThat(cmp.exitCode())
                    .as("%s: %s%s", name, cmp.stdout(), cmp.stderr())
                    .isZero();
        }

        // the daemon: a node over the export, written through and backed up
        strata = QsdDifferentialTest.startStrata(List.of(), strataDir);
        try (QmpClient q = QmpClient.connect(strataDir.resolve("qmp.sock")).negotiate()) {
            q.ok(
                    "blockdev-add",
                    args(
                            "driver",
                            "raw",
                            "node-name",
                            "remote",
                            "file",
                            args(
                                    "driver",
                                    "nbd",
                                    "server",
                                    args("type", "unix", "path", nbd.toString()),
                                    "export",
                                    "served")));
            assertThat((String) q.ok(
                            "human-monitor-command", args("command-line", "qemu-io remote \"write -P 0x99 8M 1M\"")))
                    .isEmpty();
            Interop.qemuIo("-f", "raw", "-c", "read -P 0x99 8M 1M", "nbd+unix:///served?socket=" + nbd)
                    .assertOk();
            Path backup = strataDir.resolve("backup.qcow2");
            q.ok(
                    "drive-backup",
                    args(
                            "job-id",
                            "b",
                            "device",
                            "remote",
                            "target",
                            backup.toString(),
                            "sync",
                            "full",
                            "format",
                            "qcow2"));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!((List<?>) q.ok("query-jobs", null)).isEmpty()) {
                assertThat(System.nanoTime()).as("backup ends").isLessThan(deadline);
                Thread.sleep(20);
            }
            q.ok("blockdev-del", args("node-name", "remote"));
            Interop.Result cmp = Interop.qemuImg("compare", "-U", disk.toString(), backup.toString());
            assertThat(cmp.exitCode()).as(cmp.stdout() + cmp.stderr()).isZero();
            // a missing export is refused with the server's words
            assertThat(QmpClient.errorOf(q.execute(
                            "blockdev-add",
                            args(
                                    "driver",
                                    "nbd",
                                    "node-name",
                                    "nope",
                                    "server",
                                    args("type", "unix", "path", nbd.toString()),
                                    "export",
                                    "nope"))))
                    .startsWith("GenericError: ");
        }
    }
}
