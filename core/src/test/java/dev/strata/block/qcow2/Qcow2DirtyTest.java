package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Dirty qcow2 images as a crashed QEMU leaves them (lazy refcounts, writer killed with SIGKILL):
 * a read-write open repairs them as QEMU's does, a read-only open leaves them alone, and an image
 * the repair cannot fix is refused.
 */
class Qcow2DirtyTest {
    @TempDir
    Path dir;

    private static long incompatibleFeatures(Path p) throws IOException {
        try (FileChannel ch = FileChannel.open(p)) {
            ByteBuffer b = ByteBuffer.allocate(8);
            ch.read(b, 72);
            return b.getLong(0);
        }
    }

    private static BlockNode open(BlockGraph g, Path p, boolean readOnly) throws IOException {
        return g.openImage(p.toString(), "qcow2", readOnly ? OpenFlags.READ_ONLY : OpenFlags.READ_WRITE);
    }

    /** Raw bytes of the image as QEMU reads it, without taking the image lock. */
    private byte[] qemuView(Path image) throws Exception {
        Path raw = dir.resolve("view-" + System.nanoTime() + ".raw");
        Interop.qemuImg("convert", "-U", "-O", "raw", image.toString(), raw.toString())
                .assertOk();
        try {
            return Files.readAllBytes(raw);
        } finally {
            Files.deleteIfExists(raw);
        }
    }

    /**
     * A lazy_refcounts image with data written cleanly, then more data written by a qemu-io that is
     * killed with SIGKILL while it holds the image open: the new clusters' refcounts never reach
     * the disk and the dirty bit stays set.
     */
    private Path crashedImage() throws Exception {
        Interop.require("qemu-img");
        Interop.require("qemu-io");
        Path p = dir.resolve("crashed.qcow2");
        Qcow2CheckCleanTest.create(p, "64M", "-o", "lazy_refcounts=on");
        Qcow2CheckCleanTest.io(p, "write -P 1 0 64k", "write -P 3 10M 128k");
        // qemu-io's own "abort" command kills it (SIGABRT) with the image open: a crash after the
        // writes and the flush, before a clean close could clear the dirty bit
        Process io = new ProcessBuilder(
                        "qemu-io",
                        "-c",
                        "write -P 2 1M 256k",
                        "-c",
                        "write -P 4 30M 64k",
                        "-c",
                        "flush",
                        "-c",
                        "abort",
                        p.toString())
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                .start();
        assertThat(io.waitFor(60, TimeUnit.SECONDS)).as("qemu-io ends").isTrue();
        assertThat(io.exitValue()).as("qemu-io aborted").isNotZero();
        return p;
    }

    @Test
    void crashedImageIsRepairedOnReadWriteOpen() throws Exception {
        Path p = crashedImage();
        assertThat(incompatibleFeatures(p) & Qcow2Header.INCOMPAT_DIRTY)
                .as("dirty bit after the crash")
                .isNotZero();
        Interop.Result before = Interop.qemuImg("check", p.toString());
        assertThat(before.exitCode()).as("qemu-img check of the crashed image").isEqualTo(2);
        assertThat(before.stderr()).contains("refcount=0 reference=1");
        byte[] expected = qemuView(p);

        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, false)) {
            assertThat(Arrays.equals(Images.readAll(n), expected))
                    .as("data after repair equals qemu's view before")
                    .isTrue();
            assertThat(incompatibleFeatures(p) & Qcow2Header.INCOMPAT_DIRTY)
                    .as("dirty bit while open")
                    .isZero();
            // allocate after the repair: the allocator must use the repaired refcounts
            byte[] data = new byte[192 << 10];
            Arrays.fill(data, (byte) 7);
            n.write(40 << 20, data, 0, data.length);
            System.arraycopy(data, 0, expected, 40 << 20, data.length);
        }
        assertThat(incompatibleFeatures(p))
                .as("incompatible features after close")
                .isZero();
        Images.assertCheckClean(p, "after Strata's repair and write");
        assertThat(Arrays.equals(qemuView(p), expected))
                .as("qemu reads what Strata wrote")
                .isTrue();
    }

    @Test
    void readOnlyOpenLeavesDirtyImageByteIdentical() throws Exception {
        Path p = crashedImage();
        byte[] file = Files.readAllBytes(p);
        byte[] expected = qemuView(p);
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, true)) {
            assertThat(Arrays.equals(Images.readAll(n), expected))
                    .as("read-only data equals qemu's view")
                    .isTrue();
        }
        assertThat(Arrays.equals(Files.readAllBytes(p), file))
                .as("file unchanged")
                .isTrue();
    }

    @Test
    void lazyRefcountsImageOpenedReadWriteClosesClean() throws Exception {
        Interop.require("qemu-img");
        Path p = dir.resolve("lazy.qcow2");
        Qcow2CheckCleanTest.create(p, "16M", "-o", "lazy_refcounts=on");
        byte[] data = new byte[100 << 10];
        Arrays.fill(data, (byte) 5);
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, false)) {
            n.write(3 << 20, data, 0, data.length);
            // eager refcounts: the image is consistent even while open
            assertThat(incompatibleFeatures(p))
                    .as("incompatible features while open")
                    .isZero();
            n.flush();
            Interop.Result r = Interop.qemuImg("check", "-U", p.toString());
            assertThat(r.exitCode())
                    .as("qemu-img check -U while open\n%s%s", r.stdout(), r.stderr())
                    .isZero();
        }
        Images.assertCheckClean(p, "after close");
        try (FileChannel ch = FileChannel.open(p)) {
            Qcow2Header h = Qcow2Header.parse(ch);
            assertThat(h.lazyRefcounts()).as("lazy_refcounts kept").isTrue();
            assertThat(h.isDirty()).isFalse();
        }
        byte[] view = qemuView(p);
        assertThat(Arrays.equals(Arrays.copyOfRange(view, 3 << 20, (3 << 20) + data.length), data))
                .isTrue();
    }

    @Test
    void dirtyImageTheRepairCannotFixIsRefused() throws Exception {
        Interop.require("qemu-img");
        Interop.require("qemu-io");
        Path p = dir.resolve("broken.qcow2");
        Qcow2CheckCleanTest.create(p, "64M", "-o", "lazy_refcounts=on");
        Qcow2CheckCleanTest.io(p, "write -P 1 0 64k");
        try (Qcow2CheckFixture.Editor e = new Qcow2CheckFixture.Editor(p)) {
            // an L2 table at an unaligned offset: QEMU's check reports it and cannot fix it
            e.setL1Entry(0, Qcow2CheckDamageTest.COPIED | (e.l2Table(0) + 0x200));
            e.writeLong(72, e.header.incompatibleFeatures() | Qcow2Header.INCOMPAT_DIRTY);
        }
        Path copy = dir.resolve("copy.qcow2");
        Files.copy(p, copy);
        Interop.Result qemu = Interop.qemuImg("check", "-r", "all", copy.toString());
        assertThat(qemu.exitCode())
                .as("qemu-img check -r all leaves corruptions")
                .isEqualTo(2);

        try (BlockGraph g = Drivers.newGraph()) {
            assertThatThrownBy(() -> open(g, p, false))
                    .isInstanceOf(BlockException.class)
                    .hasMessageContaining("Could not repair dirty image '" + p + "'")
                    .hasMessageContaining("corruptions and 0 check errors remain after repair")
                    .hasMessageContaining("Table is not cluster aligned");
        }
        assertThat(incompatibleFeatures(p) & Qcow2Header.INCOMPAT_DIRTY)
                .as("dirty bit stays set on a refused image")
                .isNotZero();
    }
}
