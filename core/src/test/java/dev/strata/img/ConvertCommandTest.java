package dev.strata.img;

import static dev.strata.img.ImgTool.qemu;
import static dev.strata.img.ImgTool.strata;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.strata.testing.Interop;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code strata img convert}: targets that qemu-img compare finds equal to the source and qemu-img
 * check finds clean, with the same holes as qemu-img convert's own targets (same qemu-img map), and
 * qemu-img's messages for what it refuses.
 */
class ConvertCommandTest {
    @TempDir
    Path dir;

    @BeforeEach
    void needQemu() {
        Interop.require("qemu-img");
        Interop.require("qemu-io");
    }

    private String p(String name) {
        return dir.resolve(name).toString();
    }

    private void io(String fmt, String image, List<String> commands) throws Exception {
        List<String> args = new ArrayList<>(List.of("-f", fmt));
        for (String c : commands) {
            args.add("-c");
            args.add(c);
        }
        args.add(image);
        Interop.qemuIo(args.toArray(String[]::new));
    }

    private void assertIdentical(String a, String b) throws Exception {
        ImgTool.Run r = qemu("compare", a, b);
        assertThat(r.out()).as("qemu-img compare %s %s", a, b).isEqualTo("Images are identical.\n");
        assertThat(r.exit()).isZero();
    }

    private String map(String image) throws Exception {
        return qemu("map", "--output=json", image).assertOk().out();
    }

    @Test
    void rawToQcow2ToRawRoundTripWithRandomData() throws Exception {
        long seed = new Random().nextLong();
        Random r = new Random(seed);
        qemu("create", "-f", "raw", p("src.raw"), "32M").assertOk();
        List<String> writes = new ArrayList<>();
        for (int i = 0; i < 60; i++) {
            long off = r.nextLong(32L << 20) & ~511L;
            int len = (int) Math.min(1 + r.nextInt(300_000), (32L << 20) - off);
            writes.add("write -P " + (1 + r.nextInt(255)) + " " + off + " " + len);
        }
        // a run of zeros written as data must still become a hole
        writes.add("write -P 0 20M 1M");
        io("raw", p("src.raw"), writes);
        try {
            strata("convert", "-O", "qcow2", p("src.raw"), p("mid.qcow2")).assertOk();
            strata("convert", "-O", "raw", p("mid.qcow2"), p("back.raw")).assertOk();
            assertIdentical(p("src.raw"), p("mid.qcow2"));
            assertIdentical(p("src.raw"), p("back.raw"));
            assertThat(qemu("check", p("mid.qcow2")).exit()).isZero();
            qemu("convert", "-O", "qcow2", p("src.raw"), p("q.qcow2")).assertOk();
            qemu("convert", "-O", "raw", p("q.qcow2"), p("q.raw")).assertOk();
            assertThat(map(p("mid.qcow2")).replace("mid.qcow2", "X"))
                    .isEqualTo(map(p("q.qcow2")).replace("q.qcow2", "X"));
            assertThat(map(p("back.raw"))).isEqualTo(map(p("q.raw")));
        } catch (AssertionError e) {
            throw new AssertionError("seed " + seed + ": " + e.getMessage(), e);
        }
    }

    @Test
    void chainWithZeroClustersToRawAndToSmallClusters() throws Exception {
        qemu("create", "-f", "qcow2", p("base.qcow2"), "8M").assertOk();
        io("qcow2", p("base.qcow2"), List.of("write -P 1 0 2M", "write -z 4M 1M"));
        qemu("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", p("top.qcow2"))
                .assertOk();
        io("qcow2", p("top.qcow2"), List.of("write -P 2 1M 64k", "write -z 64k 64k", "write -P 3 7M 4k"));
        strata("convert", "-O", "raw", p("top.qcow2"), p("top.raw")).assertOk();
        assertIdentical(p("top.qcow2"), p("top.raw"));
        strata("convert", "-f", "qcow2", "-O", "qcow2", "-o", "cluster_size=4k", p("top.qcow2"), p("small.qcow2"))
                .assertOk();
        assertIdentical(p("top.qcow2"), p("small.qcow2"));
        assertThat(ImgTool.json(qemu("info", "--output=json", p("small.qcow2")).out())
                        .get("cluster-size")
                        .asInt())
                .isEqualTo(4096);
        assertThat(qemu("check", p("small.qcow2")).exit()).isZero();
    }

    @Test
    void zeroBlocksBecomeHolesAndBlocksThatOnlyStartWithZerosStayData() throws Exception {
        qemu("create", "-f", "raw", p("src.raw"), "1M").assertOk();
        // 4k of data; 8k of written zeros; a block whose data starts 100 bytes in; a block whose
        // only non-zero byte is its last
        io(
                "raw",
                p("src.raw"),
                List.of("write -P 7 0 4k", "write -P 0 4k 8k", "write -P 5 12388 100", "write -P 3 20479 1"));
        for (String fmt : List.of("raw", "qcow2")) {
            strata("convert", "-O", fmt, p("src.raw"), p("s." + fmt)).assertOk();
            qemu("convert", "-O", fmt, p("src.raw"), p("q." + fmt)).assertOk();
            assertIdentical(p("src.raw"), p("s." + fmt));
            assertThat(map(p("s." + fmt)).replace("s." + fmt, "X"))
                    .as(fmt)
                    .isEqualTo(map(p("q." + fmt)).replace("q." + fmt, "X"));
        }
    }

    @Test
    void backingFileOnTheTargetKeepsOnlyTheTopLayer() throws Exception {
        qemu("create", "-f", "qcow2", p("base.qcow2"), "4M").assertOk();
        io("qcow2", p("base.qcow2"), List.of("write -P 1 0 4M"));
        qemu("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", p("top.qcow2"))
                .assertOk();
        io("qcow2", p("top.qcow2"), List.of("write -P 2 1M 64k", "write -z 2M 64k"));
        strata("convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", p("top.qcow2"), p("s.qcow2"))
                .assertOk();
        qemu("convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", p("top.qcow2"), p("q.qcow2"))
                .assertOk();
        assertIdentical(p("top.qcow2"), p("s.qcow2"));
        assertThat(map(p("s.qcow2")).replace("s.qcow2", "X"))
                .isEqualTo(map(p("q.qcow2")).replace("q.qcow2", "X"));
    }

    @Test
    void intoAnExistingTargetAndFullyAllocated() throws Exception {
        qemu("create", "-f", "raw", p("src.raw"), "2M").assertOk();
        io("raw", p("src.raw"), List.of("write -P 9 64k 64k"));
        qemu("create", "-f", "raw", p("big.raw"), "3M").assertOk();
        io("raw", p("big.raw"), List.of("write -P 8 0 3M"));
        strata("convert", "-n", "-O", "raw", p("src.raw"), p("big.raw")).assertOk();
        // the target's old data was overwritten with the source's zeros too
        qemu("convert", "-O", "raw", p("src.raw"), p("expect.raw")).assertOk();
        assertThat(qemu("compare", p("src.raw"), p("big.raw")).exit()).isEqualTo(1);
        io("raw", p("expect.raw"), List.of("truncate 3M", "write -P 8 2M 1M"));
        assertIdentical(p("expect.raw"), p("big.raw"));

        strata("convert", "-S", "0", "-O", "raw", p("src.raw"), p("full.raw")).assertOk();
        qemu("convert", "-S", "0", "-O", "raw", p("src.raw"), p("qfull.raw")).assertOk();
        assertIdentical(p("src.raw"), p("full.raw"));
        assertThat(map(p("full.raw")).replace("full.raw", "X"))
                .isEqualTo(map(p("qfull.raw")).replace("qfull.raw", "X"));
    }

    /** A raw image of text-like, random and zero runs whose lengths are not cluster multiples. */
    private static void writeMixedSource(Path file, long size, Random r) throws Exception {
        byte[] data = new byte[(int) size];
        String[] words = {"qcow2 ", "cluster ", "refcount", "\n", "the image ", "L2 ", "snapshot "};
        int pos = 0;
        while (pos < size) {
            int len = (int) Math.min(size - pos, 1 + r.nextInt(100_000));
            switch (r.nextInt(3)) {
                case 0 -> {
                    StringBuilder sb = new StringBuilder();
                    while (sb.length() < len) {
                        sb.append(words[r.nextInt(words.length)]);
                    }
                    System.arraycopy(sb.toString().getBytes(StandardCharsets.US_ASCII), 0, data, pos, len);
                }
                case 1 -> {
                    byte[] x = new byte[len];
                    r.nextBytes(x);
                    System.arraycopy(x, 0, data, pos, len);
                }
                default -> {} // zeros
            }
            pos += len;
        }
        Files.write(file, data);
    }

    /** qemu-img map entries with their host offsets removed, one per cluster, to compare layouts. */
    private List<String> clusterKinds(String image, int clusterSize) throws Exception {
        List<String> out = new ArrayList<>();
        for (JsonNode e : ImgTool.json(map(image))) {
            String kind = "data=" + e.get("data").asBoolean() + " zero="
                    + e.get("zero").asBoolean() + " offset=" + e.has("offset");
            long start = e.get("start").asLong();
            long end = start + e.get("length").asLong();
            // by cluster index, so that entries split or merged differently still line up
            for (long c = start / clusterSize; c * clusterSize < end; c++) {
                if (c < out.size()) {
                    out.set((int) c, kind);
                } else {
                    out.add(kind);
                }
            }
        }
        return out;
    }

    @ParameterizedTest(name = "cluster {0}, {1}")
    @CsvSource({"4096,zlib", "65536,zlib", "4096,zstd", "65536,zstd"})
    void compressedConvertMatchesQemu(int clusterSize, String compression) throws Exception {
        long seed = new Random().nextLong();
        Random r = new Random(seed);
        long size = 6L * 1024 * 1024 + 1000 + r.nextInt(200_000);
        Path src = dir.resolve("src.raw");
        writeMixedSource(src, size, r);
        String opts = "cluster_size=" + clusterSize + ",compression_type=" + compression;
        try {
            qemu("convert", "-c", "-O", "qcow2", "-o", opts, p("src.raw"), p("q.qcow2"))
                    .assertOk();
            if (compression.equals("zlib")) {
                strata("convert", "-c", "-O", "qcow2", "-o", "cluster_size=" + clusterSize, p("src.raw"), p("s.qcow2"))
                        .assertOk();
            } else {
                // Strata creates zlib images only: convert into a zstd image qemu-img made
                qemu("create", "-f", "qcow2", "-o", opts, p("s.qcow2"), Long.toString(size))
                        .assertOk();
                strata("convert", "-n", "-c", "-O", "qcow2", p("src.raw"), p("s.qcow2"))
                        .assertOk();
            }
            ImgTool.Run check = qemu("check", p("s.qcow2"));
            assertThat(check.exit()).as(check.out()).isZero();
            assertThat(check.out()).contains("No errors were found").doesNotContain("leaked");
            assertIdentical(p("src.raw"), p("s.qcow2"));
            // compressed clusters show as data without a host offset, just where qemu-img's are
            // except borderline ones: Strata's deflate flushes every 4 KiB (QEMU's inflate window),
            // which costs some bytes per cluster, so a cluster qemu-img barely fits compressed may
            // stay uncompressed in Strata's image; never the other way round
            List<String> strataKinds = clusterKinds(p("s.qcow2"), clusterSize);
            List<String> qemuKinds = clusterKinds(p("q.qcow2"), clusterSize);
            assertThat(strataKinds).hasSameSizeAs(qemuKinds);
            int borderline = 0;
            for (int i = 0; i < qemuKinds.size(); i++) {
                if (!strataKinds.get(i).equals(qemuKinds.get(i))) {
                    assertThat(qemuKinds.get(i))
                            .as("cluster %d: qemu-img compressed it", i)
                            .isEqualTo("data=true zero=false offset=false");
                    assertThat(strataKinds.get(i))
                            .as("cluster %d: Strata stored it plainly", i)
                            .isEqualTo("data=true zero=false offset=true");
                    borderline++;
                }
            }
            assertThat(borderline).as("borderline clusters").isLessThanOrEqualTo(Math.max(2, qemuKinds.size() / 50));
            assertThat(clusterKinds(p("s.qcow2"), clusterSize)).contains("data=true zero=false offset=false");

            // Strata reads its own compressed image
            strata("convert", "-O", "raw", p("s.qcow2"), p("back.raw")).assertOk();
            assertIdentical(p("src.raw"), p("back.raw"));

            long strataSize = Files.size(dir.resolve("s.qcow2"));
            long qemuSize = Files.size(dir.resolve("q.qcow2"));
            System.out.printf(
                    "convert -c, cluster %d, %s, source %d bytes: Strata %d bytes, qemu-img %d bytes%n",
                    clusterSize, compression, size, strataSize, qemuSize);
            // as qemu-img's, the file ends on a sector boundary
            assertThat(strataSize % 512).isZero();
            assertThat(strataSize).isLessThan(qemuSize * 5 / 4 + 4L * clusterSize);
        } catch (AssertionError e) {
            throw new AssertionError("seed " + seed + ": " + e.getMessage(), e);
        }
    }

    @Test
    void compressedConvertOfASourceThatEndsInsideASector() throws Exception {
        // 4 KiB clusters, data up to the last byte of a source whose size is no multiple of 512
        // but rounds up to whole clusters: the last cluster is given short and must be padded
        byte[] data = new byte[4 * 4096 - 100];
        new Random(5).nextBytes(data);
        Files.write(dir.resolve("odd.raw"), data);
        strata("convert", "-c", "-O", "qcow2", "-o", "cluster_size=4096", p("odd.raw"), p("odd.qcow2"))
                .assertOk();
        ImgTool.Run check = qemu("check", p("odd.qcow2"));
        assertThat(check.exit()).as(check.out()).isZero();
        assertIdentical(p("odd.raw"), p("odd.qcow2"));
    }

    @Test
    void compressedTargetTakesOrdinaryWritesAfterwards() throws Exception {
        qemu("create", "-f", "raw", p("src.raw"), "1M").assertOk();
        io("raw", p("src.raw"), List.of("write -P 7 0 256k"));
        strata("convert", "-c", "-O", "qcow2", p("src.raw"), p("c.qcow2")).assertOk();
        // an ordinary convert into the compressed image replaces compressed clusters with normal
        // ones and frees their shared host clusters (partial overwrites: Qcow2CompressedWriteTest)
        io("raw", p("src.raw"), List.of("write -P 9 70000 5000"));
        strata("convert", "-n", "-O", "qcow2", p("src.raw"), p("c.qcow2")).assertOk();
        assertIdentical(p("src.raw"), p("c.qcow2"));
        ImgTool.Run check = qemu("check", p("c.qcow2"));
        assertThat(check.exit()).as(check.out()).isZero();
        assertThat(check.out()).doesNotContain("leaked");
    }

    @Test
    void copyOffloadingCopiesWhatQemuImgMinusCCopies() throws Exception {
        qemu("create", "-f", "qcow2", p("src.qcow2"), "24M").assertOk();
        // data, data that is all zeros (copied as data: -C does not look), a zero cluster, a
        // compressed cluster (no host run: the buffered path) and a partial cluster at the end
        io(
                "qcow2",
                p("src.qcow2"),
                List.of(
                        "write -P 7 0 3M",
                        "write -P 0 5M 1M",
                        "write -z 8M 1M",
                        "write -P 9 12M 64k",
                        "write -P 3 24575k 1k"));
        qemu("convert", "-c", "-O", "qcow2", p("src.qcow2"), p("mixed.qcow2")).assertOk();
        io("qcow2", p("mixed.qcow2"), List.of("write -P 5 1M 1M", "write -P 6 20M 512"));
        for (String fmt : List.of("qcow2", "raw")) {
            for (String src : List.of("src.qcow2", "mixed.qcow2")) {
                String s = "s-" + src + "." + fmt;
                String q = "q-" + src + "." + fmt;
                strata("convert", "-C", "-f", "qcow2", "-O", fmt, p(src), p(s)).assertOk();
                qemu("convert", "-C", "-f", "qcow2", "-O", fmt, p(src), p(q)).assertOk();
                assertIdentical(p(src), p(s));
                if (src.equals("src.qcow2")) {
                    // in mixed.qcow2, qemu-io left holes in the host file inside the data cluster at
                    // 20M, which qemu-img's block status finds and skips; Strata copies whole clusters
                    assertThat(map(p(s)).replace(s, "X"))
                            .as("%s -> %s", src, fmt)
                            .isEqualTo(map(p(q)).replace(q, "X"));
                }
                if (fmt.equals("qcow2")) {
                    ImgTool.Run check = qemu("check", p(s));
                    assertThat(check.exit()).as(check.out()).isZero();
                }
            }
        }
    }

    @Test
    void refusalsMatchQemu() throws Exception {
        qemu("create", "-f", "raw", p("src.raw"), "2M").assertOk();
        qemu("create", "-f", "raw", p("small.raw"), "1M").assertOk();
        List<List<String>> cases = List.of(
                List.of("-O", "qcow2", p("nope.raw"), p("t1")),
                List.of("-O", "vhdx2", p("src.raw"), p("t2")),
                List.of("-O", "qcow2", "-o", "foo=1", p("src.raw"), p("t3")),
                List.of("-O", "qcow2", "-o", "cluster_size=1000", p("src.raw"), p("t4")),
                List.of("-O", "qcow2", "-n", "-o", "cluster_size=4k", p("src.raw"), p("small.raw")),
                List.of("-n", "-O", "raw", p("src.raw"), p("small.raw")),
                List.of("-O", "raw", "-c", p("src.raw"), p("t5")),
                List.of("-C", "-c", "-O", "qcow2", p("src.raw"), p("t7")),
                List.of("-C", "-S", "4k", "-O", "raw", p("src.raw"), p("t8")),
                List.of("-O", "qcow2", "-B", p("src.raw"), p("src.raw"), p("t6")));
        for (List<String> c : cases) {
            List<String> all = new ArrayList<>(List.of("convert"));
            all.addAll(c);
            ImgTool.Run q = qemu(all.toArray(String[]::new));
            ImgTool.Run s = strata(all.toArray(String[]::new));
            assertThat(s.exit()).as("exit of %s", all).isEqualTo(q.exit());
            // qemu-img goes on after some of these errors and prints more; its first line is the error
            assertThat(s.errNormalized().lines().findFirst())
                    .as("stderr of %s", all)
                    .isEqualTo(q.errNormalized().lines().findFirst());
        }
    }
}
