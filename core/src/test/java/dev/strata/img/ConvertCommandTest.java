package dev.strata.img;

import static dev.strata.img.ImgTool.qemu;
import static dev.strata.img.ImgTool.strata;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

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

    @Test
    void compressedSourceIsReadButCompressedTargetsAreRefused() throws Exception {
        qemu("create", "-f", "raw", p("src.raw"), "1M").assertOk();
        io("raw", p("src.raw"), List.of("write -P 7 0 256k"));
        qemu("convert", "-c", "-O", "qcow2", p("src.raw"), p("c.qcow2")).assertOk();
        strata("convert", "-O", "raw", p("c.qcow2"), p("d.raw")).assertOk();
        assertIdentical(p("src.raw"), p("d.raw"));
        ImgTool.Run s = strata("convert", "-c", "-O", "qcow2", p("src.raw"), p("e.qcow2"));
        assertThat(s.exit()).isEqualTo(1);
        assertThat(s.err()).contains("compressed");
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
