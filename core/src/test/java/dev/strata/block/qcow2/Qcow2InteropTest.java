package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Images made by qemu-img and qemu-io read in Strata exactly as {@code qemu-img convert -O raw}
 * reads them; then Strata writes into them and QEMU finds them clean and equal to the model.
 */
class Qcow2InteropTest {
    @TempDir
    Path dir;

    static Stream<Arguments> images() {
        return Stream.of(
                Arguments.of("v3 64k", "compat=1.1,cluster_size=65536", false, null),
                Arguments.of("v2 64k", "compat=0.10,cluster_size=65536", false, null),
                Arguments.of("v3 512", "cluster_size=512", false, null),
                Arguments.of("v2 4k", "compat=0.10,cluster_size=4096", false, null),
                Arguments.of("v3 2M", "cluster_size=2M", false, null),
                Arguments.of("v3 8-bit refcounts", "refcount_bits=8,cluster_size=4096", false, null),
                Arguments.of("v3 1-bit refcounts", "refcount_bits=1,cluster_size=4096", false, null),
                Arguments.of("v3 64-bit refcounts", "refcount_bits=64,cluster_size=4096", false, null),
                Arguments.of("compressed zlib", "cluster_size=65536", true, "zlib"),
                Arguments.of("compressed zlib 4k", "cluster_size=4096", true, "zlib"),
                Arguments.of("compressed zstd", "cluster_size=65536", true, "zstd"),
                Arguments.of("compressed zstd 2M", "cluster_size=2M", true, "zstd"),
                Arguments.of("v3 prealloc metadata", "preallocation=metadata,cluster_size=65536", false, null));
    }

    /**
     * Builds a two-layer chain with qemu-io: a base with patterns, an overlay with writes, zero
     * writes (with and without unmap) and discards; optionally the overlay compressed by convert.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("images")
    void qemuImagesReadAndWriteInStrata(String name, String opts, boolean compress, String ctype) throws Exception {
        Interop.require("qemu-io");
        long size = 6L << 20;
        Path base = dir.resolve("base.qcow2");
        Path top = dir.resolve("top.qcow2");
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-o",
                        opts,
                        base.toString(),
                        Long.toString(size - (1 << 20) + 512))
                .assertOk();
        qemuIo(base, "write -P 0x11 0 1M", "write -P 0x22 1536k 700k", "write -P 0x33 4000k 3k");
        // QEMU refuses preallocation with a backing file: the overlay gets the other options only
        String topOpts = opts.replace("preallocation=metadata,", "");
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-o",
                        topOpts,
                        "-b",
                        "base.qcow2",
                        "-F",
                        "qcow2",
                        top.toString(),
                        Long.toString(size))
                .assertOk();
        qemuIo(
                top,
                "write -P 0x44 64k 128k",
                "write -P 0x55 1000k 5000",
                "write -z 1600k 128k",
                "write -z -u 0 64k",
                "discard 2M 256k",
                "write -P 0x66 5M 1M",
                "discard 5M 512k",
                "write -P 0x77 3999k 2k");
        if (compress) {
            Path c = dir.resolve("compressed.qcow2");
            List<String> args = new ArrayList<>(
                    List.of("convert", "-c", "-O", "qcow2", "-o", topOpts + ",compression_type=" + ctype));
            args.addAll(List.of("-B", "base.qcow2", "-F", "qcow2", top.toString(), c.toString()));
            Interop.qemuImg(args.toArray(String[]::new)).assertOk();
            top = c;
        }
        Interop.qemuImg("check", top.toString()).assertOk();

        byte[] expected = Images.qemuRaw(top, dir);
        byte[] model;
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode node = graph.openImage(top.toString(), null, OpenFlags.READ_ONLY)) {
            assertThat(node.driverName()).isEqualTo("qcow2");
            model = Images.readAll(node);
            assertThat(model)
                    .as(name + ": Strata reads what qemu-img convert reads")
                    .isEqualTo(expected);
            assertStatusCoversRange(node);
        }

        Random rnd = new Random(name.hashCode());
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode node = graph.openImage(top.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            int cs = node.clusterSize();
            for (int i = 0; i < 60; i++) {
                long off = rnd.nextInt((int) size - 1);
                int len = (int) Math.min(size - off, 1 + rnd.nextInt(3 * cs + 5000));
                switch (rnd.nextInt(4)) {
                    case 0, 1 -> {
                        byte[] data = new byte[len];
                        rnd.nextBytes(data);
                        node.write(off, ByteBuffer.wrap(data));
                        System.arraycopy(data, 0, model, (int) off, len);
                    }
                    case 2 -> {
                        node.writeZeroes(off, len, rnd.nextBoolean());
                        Arrays.fill(model, (int) off, (int) (off + len), (byte) 0);
                    }
                    default -> {
                        node.discard(off, len);
                        long start = (off + cs - 1) / cs * cs;
                        long end = off + len == size ? size : (off + len) / cs * cs;
                        if (start < end) {
                            boolean v2 = opts.contains("compat=0.10");
                            if (v2) {
                                // v2 discards deallocate: the range reads from the backing file again
                                byte[] under = Images.readAll(node.backing().orElseThrow());
                                for (long p = start; p < end; p++) {
                                    model[(int) p] = p < under.length ? under[(int) p] : 0;
                                }
                            } else {
                                Arrays.fill(model, (int) start, (int) end, (byte) 0);
                            }
                        }
                    }
                }
            }
            assertThat(Images.readAll(node))
                    .as(name + ": after Strata's writes")
                    .isEqualTo(model);
        }
        Images.assertCheckClean(top, name);
        Images.assertSameAs(top, model, dir, name);
    }

    private static void assertStatusCoversRange(BlockNode node) throws Exception {
        List<Extent> extents = node.blockStatus(0, node.length());
        long pos = 0;
        for (Extent e : extents) {
            assertThat(e.offset()).isEqualTo(pos);
            pos = e.end();
        }
        assertThat(pos).isEqualTo(node.length());
    }

    private static void qemuIo(Path image, String... commands) throws Exception {
        List<String> args = new ArrayList<>(List.of("-f", "qcow2"));
        for (String c : commands) {
            args.add("-c");
            args.add(c);
        }
        args.add(image.toString());
        Interop.Result r = Interop.qemuIo(args.toArray(String[]::new)).assertOk();
        assertThat(r.stdout()).doesNotContain("error", "failed");
    }

    @Test
    void blockStatusMatchesQemuImgMap() throws Exception {
        Interop.require("qemu-io");
        Path img = dir.resolve("map.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", img.toString(), "4M")
                .assertOk();
        qemuIo(
                img,
                "write -P 1 0 192k",
                "write -P 2 512k 64k",
                "write -z 1M 128k",
                "write -P 3 2M 64k",
                "write -z 2M 64k");
        List<String> qemu = new ArrayList<>();
        for (String line : Interop.qemuImg("map", "--output=json", img.toString())
                .assertOk()
                .stdout()
                .split("\n")) {
            if (line.contains("\"start\"")) {
                qemu.add(line.replaceAll("[\\[\\],]*$", "").replace("[", ""));
            }
        }
        List<String> ours = new ArrayList<>();
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode node = graph.openImage(img.toString(), "qcow2", OpenFlags.READ_ONLY)) {
            for (Extent e : node.blockStatus(0, node.length())) {
                boolean present = e.kind() != Extent.Kind.UNALLOCATED;
                String s = "{ \"start\": " + e.offset() + ", \"length\": " + e.length() + ", \"depth\": " + e.depth()
                        + ", \"present\": " + present + ", \"zero\": " + e.isZero() + ", \"data\": "
                        + (e.kind() == Extent.Kind.DATA)
                        + (e.hostOffset() >= 0 ? ", \"offset\": " + e.hostOffset() : "") + "}";
                ours.add(s);
            }
        }
        assertThat(ours).isEqualTo(qemu);
    }
}
