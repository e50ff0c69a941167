package dev.strata.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * {@code differential/persistent.qmp} against qemu-storage-daemon 7.2 and Strata, as {@link
 * QsdDifferentialTest} runs its scripts: the checks of a new persistent bitmap, bitmaps an image
 * made by qemu-img holds, and bitmaps stored when a node closes and loaded when it opens again
 * (blockdev-del, blockdev-add), removed from the image at once, kept by a transaction's abort and
 * resized with the image. Every response must be the same, the images' flags and directories
 * included (query-named-block-nodes lists them). After both daemons quit, qemu-img must report
 * both images alike and clean, and QEMU must read the same dirty extents from Strata's image as
 * from its own.
 */
class QsdPersistentBitmapsTest extends QsdSandboxes {
    private static final String EXPORT_SOCKET = "nbd.sock";

    private static void images(Path dir) throws Exception {
        String pq = dir.resolve("pq.qcow2").toString();
        String pro = dir.resolve("pro.qcow2").toString();
        Interop.qemuImg("create", "-q", "-f", "qcow2", pq, "64M").assertOk();
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-o",
                        "compat=0.10",
                        dir.resolve("pv2.qcow2").toString(),
                        "64M")
                .assertOk();
        Interop.qemuImg("create", "-q", "-f", "qcow2", pro, "64M").assertOk();
        Interop.qemuImg("bitmap", "--add", pro, "b0").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write 1M 200k", "-c", "write 50M 64k", pro)
                .assertOk();
        Interop.qemuImg("bitmap", "--add", "-g", "4096", "--disable", pro, "b1").assertOk();
        Interop.qemuImg("bitmap", "--merge", "b0", pro, "b1").assertOk();
        for (String q : List.of("pq.qcow2", "pv2.qcow2", "pro.qcow2")) {
            // QEMU lists a file node's length rounded up to 512 bytes, Strata the exact length
            try (RandomAccessFile f = new RandomAccessFile(dir.resolve(q).toFile(), "rw")) {
                f.setLength((f.length() + 511) & -512L);
            }
        }
        try (RandomAccessFile f = new RandomAccessFile(dir.resolve("pr.raw").toFile(), "rw")) {
            f.setLength(64 << 20);
        }
    }

    private static List<String> blockdevs(Path dir) {
        return List.of(
                "driver=qcow2,node-name=pq,file.driver=file,file.filename=" + dir.resolve("pq.qcow2"),
                "driver=qcow2,node-name=pv2,file.driver=file,file.filename=" + dir.resolve("pv2.qcow2"),
                "driver=raw,node-name=pr,file.driver=file,file.filename=" + dir.resolve("pr.raw"),
                "driver=qcow2,node-name=pro,read-only=on,file.driver=file,file.filename=" + dir.resolve("pro.qcow2"));
    }

    @Test
    void qemuAndStrataKeepPersistentBitmapsAlike() throws Exception {
        Interop.require("qemu-storage-daemon");
        Interop.require("qemu-io");
        Interop.require("qemu-nbd");
        Interop.require("nbdinfo");
        images(qemuDir);
        images(strataDir);
        List<QsdDifferentialTest.Step> steps = QsdDifferentialTest.script("persistent.qmp");

        Path nbdSocket = qemuDir.resolve(EXPORT_SOCKET);
        List<String> cmd = new ArrayList<>();
        for (String b : blockdevs(qemuDir)) {
            cmd.addAll(List.of("--blockdev", b));
        }
        cmd.addAll(List.of("--nbd-server", "addr.type=unix,addr.path=" + nbdSocket));
        qsd = QsdDifferentialTest.startQsd(cmd, qemuDir);

        strata = QsdDifferentialTest.startStrata(blockdevs(strataDir), strataDir);
        QsdDifferentialTest.runAndQuit(
                steps, qemuDir, QsdDifferentialTest.exportingSide(qemuDir, nbdSocket), strataDir);
        assertThat(qsd.waitFor(10, TimeUnit.SECONDS)).isTrue();
        strata.shutdown();

        // on disk: the same directory, both clean, and the same bits as QEMU reads them
        Path mine = strataDir.resolve("pq.qcow2");
        Path theirs = qemuDir.resolve("pq.qcow2");
        assertThat(info(mine, strataDir)).contains("name: p4").isEqualTo(info(theirs, qemuDir));
        Interop.qemuImg("check", mine.toString()).assertOk();
        for (String bitmap : List.of("p0", "p1", "p4")) {
            assertThat(Interop.qemuBitmapMap(mine, bitmap))
                    .as("QEMU's reading of Strata's %s", bitmap)
                    .isEqualTo(Interop.qemuBitmapMap(theirs, bitmap));
        }
        assertThat(Interop.qemuBitmapMap(mine, "p0"))
                .as("the write after the resize, stored")
                .containsPattern("104857600\\s+65536\\s+1\\s+dirty");
    }

    /**
     * qemu-img info, the sandbox path and the disk size masked (QEMU punches holes where it frees
     * clusters, Strata leaves them allocated).
     */
    private static String info(Path image, Path dir) throws Exception {
        return Interop.qemuImg("info", image.toString())
                .stdout()
                .replace(dir.toString(), "DIR")
                .replaceAll("disk size: .*", "disk size: <masked>");
    }
}
