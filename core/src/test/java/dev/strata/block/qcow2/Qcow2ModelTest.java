package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.HostRun;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.block.file.FileDriver;
import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Seeded random reads, writes, zero writes and discards on qcow2 chains built by Strata, against a
 * byte array per layer; then QEMU checks every layer and compares the top with the model.
 *
 * <p>Set {@code -Dqcow2.seed=N} to replay one seed.
 */
class Qcow2ModelTest {
    @TempDir
    Path dir;

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        for (int cs : new int[] {512, 4096, 65536, 2 << 20}) {
            for (int layers = 1; layers <= 4; layers++) {
                out.add(Arguments.of(cs, layers));
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "cluster {0}, {1} layer(s)")
    @MethodSource("cases")
    void randomOperationsMatchModel(int clusterSize, int layers) throws Exception {
        Interop.require("qemu-img");
        long seed = Long.getLong("qcow2.seed", 0x5eed_0000L + clusterSize * 31L + layers);
        Random rnd = new Random(seed);
        String ctx = "seed " + seed + ", cluster " + clusterSize + ", layers " + layers;

        Path runs = Files.createFile(dir.resolve("host-runs.raw"));
        try (FileDriver scratch = FileDriver.open(runs.toString(), false)) {
            HOST_SCRATCH.set(scratch);
            randomChain(rnd, clusterSize, layers, ctx);
        } finally {
            HOST_SCRATCH.remove();
        }
    }

    private void randomChain(Random rnd, int clusterSize, int layers, String ctx) throws Exception {
        long runBytes = 0;
        byte[] below = new byte[0];
        Path previous = null;
        List<Path> images = new ArrayList<>();
        for (int layer = 0; layer < layers; layer++) {
            boolean top = layer == layers - 1;
            long size = top ? 8L << 20 : (4L << 20) + 512L * rnd.nextInt(8192);
            Path image = dir.resolve("layer" + layer + ".qcow2");
            Qcow2Create.Options opts = Qcow2Create.Options.of(size).withClusterSize(clusterSize);
            if (previous != null) {
                opts = opts.withBacking(previous.getFileName().toString(), "qcow2");
            }
            TestImages.createQcow2(image, opts);
            byte[] model = Arrays.copyOf(below, (int) size);
            if (below.length > size) {
                model = Arrays.copyOf(below, (int) size);
            }
            try (BlockGraph graph = Drivers.newGraph();
                    BlockNode node = graph.openImage(image.toString(), "qcow2", OpenFlags.READ_WRITE)) {
                if (layer % 2 == 1) {
                    // a backup target's mode: metadata waits in memory until the flush below
                    node.driver().setMetadataWriteback(true);
                }
                assertThat(Images.readAll(node))
                        .as(ctx + ": fresh layer " + layer)
                        .isEqualTo(model);
                runBytes += runOps(
                        node,
                        model,
                        rnd,
                        clusterSize,
                        previous != null,
                        ctx + ", layer " + layer,
                        (top ? 400 : 150) / (clusterSize > 65536 ? 3 : 1));
                node.flush();
            }
            try (BlockGraph graph = Drivers.newGraph();
                    BlockNode node = graph.openImage(image.toString(), "qcow2", OpenFlags.READ_ONLY)) {
                assertThat(Images.readAll(node))
                        .as(ctx + ": layer " + layer + " after reopen")
                        .isEqualTo(model);
            }
            images.add(image);
            below = model;
            previous = image;
        }
        for (Path image : images) {
            Images.assertCheckClean(image, ctx);
        }
        Images.assertSameAs(previous, below, dir, ctx);
        assertThat(runBytes).as(ctx + ": bytes found in host runs").isPositive();
    }

    /** Runs {@code ops} random operations; returns the bytes its host-run lookups found. */
    private static long runOps(
            BlockNode node, byte[] model, Random rnd, int cs, boolean hasBacking, String ctx, int ops)
            throws Exception {
        int size = model.length;
        long runBytes = 0;
        for (int i = 0; i < ops; i++) {
            int op = rnd.nextInt(10);
            long off = randomOffset(rnd, size, cs);
            int len = (int) Math.min(size - off, randomLength(rnd, cs));
            if (len <= 0) {
                continue;
            }
            String what = ctx + ", op " + i;
            switch (op) {
                case 0, 1, 2, 3 -> {
                    byte[] data = new byte[len];
                    rnd.nextBytes(data);
                    if (i % 3 == 0) {
                        // copy offload: the same bytes given as a run of another host file
                        long at = 512L * (i % 7);
                        HOST_SCRATCH.get().write(at, ByteBuffer.wrap(data));
                        node.writeHost(off, new HostRun(HOST_SCRATCH.get(), at, len));
                    } else {
                        ByteBuffer src = rnd.nextBoolean() ? ByteBuffer.wrap(data) : direct(data);
                        node.write(off, src);
                    }
                    System.arraycopy(data, 0, model, (int) off, len);
                }
                case 4, 5 -> {
                    boolean unmap = rnd.nextBoolean();
                    node.writeZeroes(off, len, unmap);
                    Arrays.fill(model, (int) off, (int) off + len, (byte) 0);
                }
                case 6 -> {
                    node.discard(off, len);
                    // QEMU semantics (v3): whole clusters inside the range read as zeros; a partial
                    // cluster at the end of the image counts as whole
                    long start = (off + cs - 1) / cs * cs;
                    long end = off + len == size ? size : (off + len) / cs * cs;
                    if (start < end) {
                        Arrays.fill(model, (int) start, (int) end, (byte) 0);
                    }
                }
                case 7 -> {
                    // copy offload's read side: a run, when there is one, holds the model's bytes
                    long n = node.withHostRun(off, len, run -> {
                        ByteBuffer got = ByteBuffer.allocate((int) run.length());
                        run.file().read(run.offset(), got);
                        assertThat(got.array())
                                .as("%s: host run %d+%d", what, off, run.length())
                                .isEqualTo(Arrays.copyOfRange(model, (int) off, (int) (off + run.length())));
                        return run.length();
                    });
                    assertThat(n).as(what).isBetween(0L, (long) len);
                    runBytes += n;
                }
                default -> {
                    byte[] got = new byte[len];
                    ByteBuffer dst = rnd.nextBoolean() ? ByteBuffer.wrap(got) : ByteBuffer.allocateDirect(len);
                    node.read(off, dst);
                    if (dst.isDirect()) {
                        dst.flip();
                        dst.get(got);
                    }
                    assertThat(got)
                            .as("%s: read %d+%d", what, off, len)
                            .isEqualTo(Arrays.copyOfRange(model, (int) off, (int) off + len));
                }
            }
            if (i % 100 == 99) {
                assertThat(Images.readAll(node)).as(what + ": full read").isEqualTo(model);
            }
        }
        assertThat(Images.readAll(node)).as(ctx + ": full read at end").isEqualTo(model);
        return runBytes;
    }

    /** The host file copy-offload writes take their bytes from (one per test thread). */
    private static final ThreadLocal<FileDriver> HOST_SCRATCH = new ThreadLocal<>();

    private static ByteBuffer direct(byte[] data) {
        ByteBuffer b = ByteBuffer.allocateDirect(data.length);
        b.put(data).flip();
        return b;
    }

    private static long randomOffset(Random rnd, int size, int cs) {
        return switch (rnd.nextInt(3)) {
            case 0 -> (long) rnd.nextInt(size / cs) * cs;
            case 1 -> (long) rnd.nextInt(size / 512) * 512;
            default -> rnd.nextInt(size);
        };
    }

    private static long randomLength(Random rnd, int cs) {
        return switch (rnd.nextInt(4)) {
            case 0 -> (1 + rnd.nextInt(4)) * (long) cs;
            case 1 -> 1 + rnd.nextInt(4096);
            case 2 -> 1 + rnd.nextInt(3 * cs);
            default -> 1 + rnd.nextInt(256 << 10);
        };
    }
}
