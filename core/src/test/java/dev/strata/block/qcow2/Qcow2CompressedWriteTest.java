package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.CompressedWriter;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Compressed cluster writes of the qcow2 engine against a model: QEMU must read the same bytes
 * and find the refcounts exact (several compressed clusters share a host cluster), Strata must
 * read its own compressed clusters back, and ordinary writes over them must copy on write.
 */
class Qcow2CompressedWriteTest {
    @TempDir
    Path dir;

    private static final String[] WORDS = {
        "block", "cluster", "refcount ", "qcow2", "\n", "the ", "image ", "snapshot", "L2 table", "0x1f00 "
    };

    /** One cluster of a random kind: text that compresses, random bytes that do not, zeros, or a mix. */
    static void fillCluster(Random r, byte[] b, int off, int len) {
        switch (r.nextInt(4)) {
            case 0 -> {
                StringBuilder sb = new StringBuilder();
                while (sb.length() < len) {
                    sb.append(WORDS[r.nextInt(WORDS.length)]);
                }
                System.arraycopy(sb.toString().getBytes(StandardCharsets.US_ASCII), 0, b, off, len);
            }
            case 1 -> {
                byte[] x = new byte[len];
                r.nextBytes(x);
                System.arraycopy(x, 0, b, off, len);
            }
            case 2 -> Arrays.fill(b, off, off + len, (byte) 0);
            default -> {
                byte[] x = new byte[len / 2];
                r.nextBytes(x);
                System.arraycopy(x, 0, b, off + len / 4, x.length);
            }
        }
    }

    @ParameterizedTest(name = "cluster {0}, {1}, refcount bits {2}")
    @CsvSource({"4096,zlib,16", "65536,zlib,16", "4096,zstd,16", "65536,zstd,16", "512,zlib,1", "4096,zlib,2"})
    void compressedWritesMatchTheModel(int clusterSize, String compression, int refcountBits) throws Exception {
        Interop.require("qemu-img");
        long seed = new Random().nextLong();
        Random r = new Random(seed);
        long size = 40L * clusterSize + 1536; // the last cluster is short
        Path p = dir.resolve("c.qcow2");
        Interop.qemuImg(
                        "create",
                        "-f",
                        "qcow2",
                        "-o",
                        "cluster_size=" + clusterSize + ",compression_type=" + compression + ",refcount_bits="
                                + refcountBits,
                        p.toString(),
                        Long.toString(size))
                .assertOk();
        byte[] model = new byte[(int) size];
        String context = "seed " + seed + ", cluster " + clusterSize + ", " + compression;
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(p.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            CompressedWriter w = (CompressedWriter) n.driver();
            int compressed = 0;
            for (int round = 0; round < 3; round++) {
                for (long c = 0; c * clusterSize < size; c++) {
                    if (round > 0 && r.nextInt(3) != 0) {
                        continue;
                    }
                    int off = (int) (c * clusterSize);
                    int len = (int) Math.min(clusterSize, size - off);
                    fillCluster(r, model, off, len);
                    if (w.writeCompressed(off, ByteBuffer.wrap(model, off, len))) {
                        compressed++;
                    }
                }
                // ordinary writes over compressed clusters, partly covering them
                for (int i = 0; i < 8; i++) {
                    int off = r.nextInt((int) size - 1);
                    int len = 1 + r.nextInt((int) Math.min(3 * clusterSize, size - off) - 1 + 1);
                    len = Math.min(len, (int) size - off);
                    byte[] x = new byte[len];
                    r.nextBytes(x);
                    System.arraycopy(x, 0, model, off, len);
                    n.write(off, ByteBuffer.wrap(x));
                }
            }
            assertThat(compressed).as(context).isPositive();
            assertThat(Images.readAll(n)).as("%s: Strata reads back", context).isEqualTo(model);
        }
        Images.assertCheckClean(p, context);
        Images.assertSameAs(p, model, dir, context);
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(p.toString(), "qcow2", OpenFlags.READ_ONLY)) {
            assertThat(Images.readAll(n))
                    .as("%s: Strata reads back after reopening", context)
                    .isEqualTo(model);
        }
    }

    @Test
    void incompressibleDataIsStoredAsANormalClusterAndPartialClustersAreRefused() throws Exception {
        Interop.require("qemu-img");
        Path p = dir.resolve("n.qcow2");
        TestImages.createQcow2(p, Qcow2Create.Options.of(1 << 20).withClusterSize(4096));
        byte[] random = new byte[4096];
        new Random(7).nextBytes(random);
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(p.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            CompressedWriter w = (CompressedWriter) n.driver();
            assertThat(w.writeCompressed(0, ByteBuffer.wrap(random))).isFalse();
            assertThat(w.writeCompressed(4096, ByteBuffer.wrap(new byte[4096]))).isTrue();
            assertThatThrownBy(() -> w.writeCompressed(512, ByteBuffer.wrap(new byte[4096])))
                    .isInstanceOf(BlockException.class);
            assertThatThrownBy(() -> w.writeCompressed(8192, ByteBuffer.wrap(new byte[100])))
                    .isInstanceOf(BlockException.class);
        }
        String map =
                Interop.qemuImg("map", "--output=json", p.toString()).assertOk().stdout();
        // the random cluster has a host offset, the compressed one has none
        assertThat(map)
                .contains("\"start\": 0, \"length\": 4096, \"depth\": 0, \"present\": true, \"zero\": false,"
                        + " \"data\": true, \"offset\":");
        assertThat(map)
                .contains("\"start\": 4096, \"length\": 4096, \"depth\": 0, \"present\": true,"
                        + " \"zero\": false, \"data\": true}");
        Images.assertCheckClean(p, "normal fallback");
    }
}
