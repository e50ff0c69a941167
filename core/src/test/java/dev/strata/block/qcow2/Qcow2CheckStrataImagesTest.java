package dev.strata.block.qcow2;

import static dev.strata.block.qcow2.Qcow2CheckFixture.assertSameReport;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Images created and written by Strata's own qcow2 engine: the check agrees with qemu-img on them
 * as written, and after damage and repair both tools find them clean and Strata still reads the
 * data it wrote.
 */
class Qcow2CheckStrataImagesTest {
    @TempDir
    Path dir;

    static Stream<Arguments> layouts() {
        return Stream.of(
                Arguments.of(512, Qcow2Create.Preallocation.OFF, 11L),
                Arguments.of(4096, Qcow2Create.Preallocation.OFF, 12L),
                Arguments.of(65536, Qcow2Create.Preallocation.OFF, 13L),
                Arguments.of(65536, Qcow2Create.Preallocation.METADATA, 14L),
                Arguments.of(2 << 20, Qcow2Create.Preallocation.OFF, 15L));
    }

    /** Writes, zero writes and discards at random places; returns what the guest should read. */
    private byte[] writeRandomly(Path image, long size, long seed) throws Exception {
        Random rnd = new Random(seed);
        byte[] model = new byte[(int) size];
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode node = graph.openImage(image.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            for (int i = 0; i < 80; i++) {
                long off = rnd.nextInt((int) size - 1);
                int len = (int) Math.min(size - off, 1 + rnd.nextInt(300_000));
                switch (rnd.nextInt(5)) {
                    case 0, 1, 2 -> {
                        byte[] data = new byte[len];
                        rnd.nextBytes(data);
                        node.write(off, ByteBuffer.wrap(data));
                        System.arraycopy(data, 0, model, (int) off, len);
                    }
                    case 3 -> {
                        node.writeZeroes(off, len, rnd.nextBoolean());
                        java.util.Arrays.fill(model, (int) off, (int) (off + len), (byte) 0);
                    }
                    default -> {
                        node.discard(off, len);
                        int cs = node.clusterSize();
                        long start = (off + cs - 1) / cs * cs;
                        long end = off + len == size ? size : (off + len) / cs * cs;
                        if (start < end) {
                            java.util.Arrays.fill(model, (int) start, (int) end, (byte) 0);
                        }
                    }
                }
            }
        }
        return model;
    }

    private byte[] readBack(Path image) throws Exception {
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode node = graph.openImage(image.toString(), "qcow2", OpenFlags.READ_ONLY)) {
            return Images.readAll(node);
        }
    }

    private Path strataImage(int clusterSize, Qcow2Create.Preallocation prealloc, long seed, long size)
            throws Exception {
        Path image = dir.resolve("strata.qcow2");
        TestImages.createQcow2(
                image, Qcow2Create.Options.of(size).withClusterSize(clusterSize).withPreallocation(prealloc));
        return image;
    }

    @ParameterizedTest(name = "cluster {0}, preallocation {1}, seed {2}")
    @MethodSource("layouts")
    void writtenImageChecksLikeQemuImg(int clusterSize, Qcow2Create.Preallocation prealloc, long seed)
            throws Exception {
        Interop.require("qemu-img");
        long size = 24L << 20;
        Path image = strataImage(clusterSize, prealloc, seed, size);
        writeRandomly(image, size, seed);
        Qcow2CheckFixture.Report qemu =
                Qcow2CheckFixture.qemu(image, Qcow2Check.RepairMode.NONE, dir.resolve("q.qcow2"));
        Qcow2CheckFixture.Report strata =
                Qcow2CheckFixture.strata(image, Qcow2Check.RepairMode.NONE, dir.resolve("s.qcow2"));
        assertThat(qemu.exitCode())
                .as("seed %d: qemu-img finds Strata's image clean", seed)
                .isZero();
        assertSameReport(strata, qemu, true);
    }

    @ParameterizedTest(name = "cluster {0}, preallocation {1}, seed {2}")
    @MethodSource("layouts")
    void damagedWrittenImageIsRepairedLikeQemuImg(int clusterSize, Qcow2Create.Preallocation prealloc, long seed)
            throws Exception {
        Interop.require("qemu-img");
        long size = 24L << 20;
        Path image = strataImage(clusterSize, prealloc, seed, size);
        byte[] model = writeRandomly(image, size, seed);
        try (Qcow2CheckFixture.Editor e = new Qcow2CheckFixture.Editor(image)) {
            long l2 = e.firstL2Table();
            long data = (e.l2Entry(l2, e.firstDataEntry(l2)) & 0x00ff_ffff_ffff_fe00L) / e.clusterSize;
            // one cluster leaked, one used cluster with refcount 0: -r all must rebuild
            e.setRefcount(data, 0);
            long last = e.size() / e.clusterSize - 1;
            e.setRefcount(last, e.refcount(last) + 1);
        }
        for (Qcow2Check.RepairMode mode : Qcow2Check.RepairMode.values()) {
            Path q = dir.resolve("q-" + mode + ".qcow2");
            Path s = dir.resolve("s-" + mode + ".qcow2");
            Qcow2CheckFixture.Report qemu = Qcow2CheckFixture.qemu(image, mode, q);
            Qcow2CheckFixture.Report strata = Qcow2CheckFixture.strata(image, mode, s);
            assertSameReport(strata, qemu, true);
            if (mode == Qcow2Check.RepairMode.ALL) {
                Qcow2CheckFixture.Report verdict = Qcow2CheckFixture.qemuAsIs(s);
                assertThat(verdict.exitCode())
                        .as("seed %d: clean after -r all", seed)
                        .isZero();
                assertThat(verdict.json())
                        .isEqualTo(Qcow2CheckFixture.qemuAsIs(q).json());
                assertThat(readBack(s)).as("seed %d: data after repair", seed).isEqualTo(model);
            }
        }
    }
}
