package dev.strata.img;

import static dev.strata.img.ImgTool.qemu;
import static dev.strata.img.ImgTool.strata;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code strata img create} against qemu-img create: the same command line run by each tool in its
 * own directory (holding the same backing files) must print the same lines, fail the same way, and
 * make an image qemu-img describes the same; qcow2 images must even be byte-identical.
 */
class CreateCommandTest {
    @TempDir
    Path qemuDir;

    @TempDir
    Path strataDir;

    @BeforeEach
    void backingFiles() throws Exception {
        Interop.require("qemu-img");
        for (Path d : List.of(qemuDir, strataDir)) {
            qemu("create", "-f", "qcow2", d.resolve("base.qcow2").toString(), "64M")
                    .assertOk();
            qemu("create", "-f", "raw", d.resolve("base.raw").toString(), "3M").assertOk();
        }
    }

    /** The arguments with "X" standing for the new image's path in {@code d}. */
    private static String[] args(String spec, Path d) {
        List<String> out = new ArrayList<>(List.of("create"));
        for (String a : spec.split(" ")) {
            out.add(a.equals("X") ? d.resolve("x.img").toString() : a);
        }
        return out.toArray(String[]::new);
    }

    private static String norm(String text, Path d) {
        return text.replace(d.toString(), "DIR");
    }

    @ParameterizedTest
    @ValueSource(
            strings = {
                "-f qcow2 X 64M",
                "-f qcow2 -o cluster_size=4k X 1G",
                "-f qcow2 -o cluster_size=64k,lazy_refcounts=on X 1G",
                "-f qcow2 -o lazy_refcounts=true X 1G",
                "-f qcow2 -o preallocation=metadata -o cluster_size=4k X 1M",
                "-f qcow2 -o cluster_size=4k -o cluster_size=8k X 1M",
                "-f qcow2 -o size=2M X",
                "-f qcow2 -o compat=v3 X 1M",
                "-f qcow2 -o compat=0.10 X 1M",
                "-f qcow2 -o compat=0.10,cluster_size=4k X 64M",
                "-f qcow2 -o refcount_bits=1 X 1M",
                "-f qcow2 -o refcount_bits=8,cluster_size=4k X 64M",
                "-f qcow2 -o refcount_bits=64 X 1G",
                "-f qcow2 -o compression_type=zstd X 1M",
                "-f qcow2 X 1.5M",
                "-f qcow2 X 1000",
                "-f qcow2 X 1",
                "-f qcow2 X 0",
                "-f raw X 10M",
                "-f raw X 1",
                "-f raw X 1.5k",
                "X 1M",
                "-q -f qcow2 X 1M",
                "-f qcow2 -b base.qcow2 -F qcow2 X",
                "-f qcow2 -b base.qcow2 -F qcow2 X 128M",
                "-f qcow2 -b base.raw -F raw X",
                "-f qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2 X",
                "-f qcow2 -b base.qcow2 -o backing_fmt=qcow2 X",
                "-f qcow2 -u -b nonexist.qcow2 -F qcow2 X 1M",
                // failures: the message (and for some the Formatting line before it) must match
                "-f qcow2 -o cluster_size=1000 X 1M",
                "-f qcow2 -o compat=0.10,lazy_refcounts=on X 1M",
                "-f qcow2 -o compat=0.10,refcount_bits=8 X 1M",
                "-f qcow2 -o compat=0.10,compression_type=zstd X 1M",
                "-f qcow2 -o refcount_bits=3 X 1M",
                "-f qcow2 -o bogus=1 X 1M",
                "-f qcow2 X",
                "-f raw -b base.qcow2 -F qcow2 X 1M",
                "-f foo X 1M",
                "-f qcow2 X 1Q",
                "-f qcow2 -b base.qcow2 X",
                "-f qcow2 -u -b nonexist.qcow2 X 1M",
                "-f qcow2 -u -b nonexist.qcow2 -F qcow2 X",
                "-f qcow2 -b nonexist.qcow2 -F qcow2 X 1M",
            })
    void sameOutputAndSameImage(String spec) throws Exception {
        ImgTool.Run q = qemu(args(spec, qemuDir));
        ImgTool.Run s = strata(args(spec, strataDir));
        assertThat(s.exit()).as("exit of %s (qemu stderr: %s)", spec, q.err()).isEqualTo(q.exit());
        assertThat(norm(s.out(), strataDir)).as("stdout of %s", spec).isEqualTo(norm(q.out(), qemuDir));
        assertThat(norm(s.errNormalized(), strataDir))
                .as("stderr of %s", spec)
                .isEqualTo(norm(q.errNormalized(), qemuDir));
        Path qImage = qemuDir.resolve("x.img");
        Path sImage = strataDir.resolve("x.img");
        assertThat(Files.exists(sImage)).isEqualTo(Files.exists(qImage));
        if (q.exit() != 0 || !Files.exists(qImage)) {
            return;
        }
        String qInfo =
                qemu("info", "--output=json", qImage.toString()).assertOk().out();
        String sInfo =
                qemu("info", "--output=json", sImage.toString()).assertOk().out();
        var qj = (com.fasterxml.jackson.databind.node.ObjectNode) ImgTool.json(norm(qInfo, qemuDir));
        var sj = (com.fasterxml.jackson.databind.node.ObjectNode) ImgTool.json(norm(sInfo, strataDir));
        // disk usage depends on how each tool wrote the file, not on what the image is
        qj.remove("actual-size");
        sj.remove("actual-size");
        assertThat(sj).as("qemu-img info of %s", spec).isEqualTo(qj);
        if (spec.contains("qcow2")) {
            if (!spec.contains("nonexist")) {
                // qemu-img check opens the backing file too
                assertThat(qemu("check", sImage.toString()).exit()).isZero();
            }
            assertThat(Files.mismatch(sImage, qImage)).as("bytes of %s", spec).isEqualTo(-1);
        } else {
            assertThat(Files.size(sImage)).isEqualTo(Files.size(qImage));
            assertThat(qemu("map", "--output=json", sImage.toString()).out())
                    .isEqualTo(qemu("map", "--output=json", qImage.toString()).out());
        }
    }

    @Test
    void chainMadeByStrataIsAChainToQemu() throws Exception {
        String full = strataDir.resolve("full.qcow2").toString();
        String inc = strataDir.resolve("inc0.qcow2").toString();
        strata("create", "-f", "qcow2", full, "64M").assertOk();
        strata("create", "-f", "qcow2", "-b", full, "-F", "qcow2", inc).assertOk();
        var chain = ImgTool.json(
                qemu("info", "--backing-chain", "--output=json", inc).assertOk().out());
        assertThat(chain).hasSize(2);
        assertThat(chain.get(0).get("filename").asText()).isEqualTo(inc);
        assertThat(chain.get(0).get("backing-filename").asText()).isEqualTo(full);
        assertThat(chain.get(0).get("backing-filename-format").asText()).isEqualTo("qcow2");
        assertThat(chain.get(1).get("filename").asText()).isEqualTo(full);
        assertThat(chain.get(1).get("virtual-size").asLong()).isEqualTo(64L << 20);
        assertThat(chain.get(0).get("virtual-size").asLong()).isEqualTo(64L << 20);
        assertThat(qemu("check", inc).exit()).isZero();
    }
}
