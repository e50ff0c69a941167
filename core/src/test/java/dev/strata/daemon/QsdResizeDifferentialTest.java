package dev.strata.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * {@code differential/resize.qmp} run against qemu-storage-daemon 7.2 and against Strata as
 * {@link QsdDifferentialTest} runs its scripts, on nodes of their own: block_resize's refusals (no
 * such node, negative size, read-only, a qcow2 node's file, a backing file, an NBD export, a fixed
 * raw window, a backup's source and target) and its successes, with the bitmaps following.
 *
 * <p>One node is exported over NBD for the whole run on both sides. Guest writes on QEMU's side
 * go through an NBD export made for the write and removed after it, because an export keeps its
 * node from being resized.
 */
class QsdResizeDifferentialTest extends QsdSandboxes {
    private static final long MiB = 1 << 20;
    private static final String EXPORT = "type=nbd,id=e0,node-name=ex,name=ex";

    private static void images(Path dir) throws Exception {
        for (String q : List.of("q.qcow2", "t.qcow2", "ro.qcow2", "base.qcow2")) {
            Interop.qemuImg("create", "-q", "-f", "qcow2", dir.resolve(q).toString(), "64M")
                    .assertOk();
            // QEMU lists a file node's length rounded up to 512 bytes, Strata the exact length:
            // whole sectors read the same in both listings
            try (RandomAccessFile f = new RandomAccessFile(dir.resolve(q).toFile(), "rw")) {
                f.setLength((f.length() + 511) & -512L);
            }
        }
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-b",
                        "base.qcow2",
                        "-F",
                        "qcow2",
                        dir.resolve("top.qcow2").toString())
                .assertOk();
        for (var e : Map.of("r.raw", 64 * MiB, "e.raw", 64 * MiB, "w.raw", 4 * MiB, "f.raw", 4 * MiB)
                .entrySet()) {
            try (RandomAccessFile f =
                    new RandomAccessFile(dir.resolve(e.getKey()).toFile(), "rw")) {
                f.setLength(e.getValue());
            }
        }
    }

    private static List<String> blockdevs(Path dir) {
        return List.of(
                "driver=file,node-name=qf,filename=" + dir.resolve("q.qcow2"),
                "driver=qcow2,node-name=qd,file=qf",
                "driver=raw,node-name=rd,file.driver=file,file.filename=" + dir.resolve("r.raw"),
                "driver=qcow2,node-name=tgt,file.driver=file,file.filename=" + dir.resolve("t.qcow2"),
                "driver=raw,node-name=ex,file.driver=file,file.filename=" + dir.resolve("e.raw"),
                "driver=qcow2,node-name=ro,read-only=on,file.driver=file,file.filename=" + dir.resolve("ro.qcow2"));
    }

    @Test
    void qemuAndStrataAnswerTheResizeScriptAlike() throws Exception {
        Interop.require("qemu-storage-daemon");
        Interop.require("qemu-io");
        images(qemuDir);
        images(strataDir);
        List<QsdDifferentialTest.Step> steps = QsdDifferentialTest.script("resize.qmp");

        Path nbdSocket = qemuDir.resolve("nbd.sock");
        List<String> cmd = new ArrayList<>();
        for (String b : blockdevs(qemuDir)) {
            cmd.addAll(List.of("--blockdev", b));
        }
        cmd.addAll(List.of("--nbd-server", "addr.type=unix,addr.path=" + nbdSocket, "--export", EXPORT));
        qsd = QsdDifferentialTest.startQsd(cmd, qemuDir);

        strata = QsdDifferentialTest.startStrata(
                blockdevs(strataDir),
                strataDir,
                new Daemon.NbdServerOption("addr.type=unix,addr.path=" + strataDir.resolve("nbd.sock")),
                new Daemon.ExportOption(EXPORT));
        QsdDifferentialTest.runAndQuit(
                steps, qemuDir, QsdDifferentialTest.exportingSide(qemuDir, nbdSocket), strataDir);
        assertThat(qsd.waitFor(10, TimeUnit.SECONDS)).isTrue();
    }
}
