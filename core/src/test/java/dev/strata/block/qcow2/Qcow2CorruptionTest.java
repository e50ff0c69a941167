package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Random byte corruption of a real image's metadata (header, refcount table and blocks, L1 and L2
 * tables, compressed data): opening, reading, mapping and writing either work or fail with an
 * {@link IOException}, never with another exception, an endless loop or running out of memory.
 */
class Qcow2CorruptionTest {
    @TempDir
    Path dir;

    @Test
    void corruptedMetadataFailsCleanly() throws Exception {
        Interop.require("qemu-io");
        Path src = dir.resolve("src.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", src.toString(), "2M")
                .assertOk();
        Interop.qemuIo(
                        "-f",
                        "qcow2",
                        "-c",
                        "write -P 5 0 300k",
                        "-c",
                        "write -z 512k 64k",
                        "-c",
                        "write -P 6 1M 8k",
                        src.toString())
                .assertOk();
        Path compressed = dir.resolve("c.qcow2");
        Interop.qemuImg(
                        "convert",
                        "-c",
                        "-O",
                        "qcow2",
                        "-o",
                        "cluster_size=4096",
                        src.toString(),
                        compressed.toString())
                .assertOk();
        long seed = Long.getLong("qcow2.seed", 0xbadL);
        Random rnd = new Random(seed);
        int iterations = Integer.getInteger("qcow2.corruptions", 300);
        for (int i = 0; i < iterations; i++) {
            byte[] image = Files.readAllBytes(i % 2 == 0 ? src : compressed);
            int flips = 1 + rnd.nextInt(8);
            // metadata sits in the first clusters; data clusters are harmless to corrupt
            int span = Math.min(image.length, 6 * 4096);
            for (int f = 0; f < flips; f++) {
                int at = rnd.nextInt(span);
                image[at] = (byte) (rnd.nextBoolean() ? rnd.nextInt(256) : image[at] ^ (1 << rnd.nextInt(8)));
            }
            Path p = dir.resolve("corrupt.qcow2");
            Files.write(p, image);
            String ctx = "seed " + seed + " iteration " + i;
            exercise(p, true, ctx);
            Files.write(p, image);
            exercise(p, false, ctx);
        }
    }

    private static void exercise(Path p, boolean readOnly, String ctx) {
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n =
                        g.openImage(p.toString(), "qcow2", readOnly ? OpenFlags.READ_ONLY : OpenFlags.READ_WRITE)) {
            long len = Math.min(n.length(), 4L << 20);
            if (len > 0) {
                tryIo(() -> n.blockStatus(0, len));
                ByteBuffer buf = ByteBuffer.allocate(64 << 10);
                for (long off = 0; off < len; off += buf.capacity()) {
                    long o = off;
                    tryIo(() -> n.read(o, buf.clear().limit((int) Math.min(buf.capacity(), len - o))));
                }
                if (!readOnly) {
                    tryIo(() -> n.write(4096 + 100, ByteBuffer.allocate(10000)));
                    tryIo(() -> n.discard(0, 64 << 10));
                    tryIo(() -> n.writeZeroes(8192, 4096 * 3, true));
                }
            }
        } catch (IOException expected) {
            // refusing a corrupt image is fine
        } catch (RuntimeException | Error e) {
            throw new AssertionError(ctx + (readOnly ? " (read-only)" : " (read-write)") + ": " + e, e);
        }
    }

    @FunctionalInterface
    private interface IoAction {
        void run() throws IOException;
    }

    private static void tryIo(IoAction a) {
        try {
            a.run();
        } catch (IOException expected) {
            assertThat(expected.getMessage()).isNotBlank();
        }
    }
}
