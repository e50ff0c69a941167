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
 * {@code strata img map} against qemu-img map on the same images: human and JSON output must be
 * byte-identical, whatever mix of data, zero and unallocated clusters and backing layers the
 * image has.
 */
class MapCommandTest {
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

    private void assertSameMap(String... args) throws Exception {
        for (String output : List.of("human", "json")) {
            List<String> all = new ArrayList<>(List.of("map", "--output=" + output));
            all.addAll(List.of(args));
            ImgTool.Run q = qemu(all.toArray(String[]::new));
            ImgTool.Run s = strata(all.toArray(String[]::new));
            assertThat(s.out()).as("stdout of %s", all).isEqualTo(q.out());
            assertThat(s.exit()).as("exit of %s", all).isEqualTo(q.exit());
            assertThat(s.errNormalized()).as("stderr of %s", all).isEqualTo(q.errNormalized());
        }
    }

    private void io(String image, String... commands) throws Exception {
        List<String> args = new ArrayList<>();
        for (String c : commands) {
            args.add("-c");
            args.add(c);
        }
        args.add(image);
        Interop.qemuIo(args.toArray(String[]::new));
    }

    @Test
    void sparseRawFile() throws Exception {
        qemu("create", "-f", "raw", p("a.raw"), "10M").assertOk();
        assertSameMap(p("a.raw"));
        io(p("a.raw"), "write -P 3 5M 64k", "write -P 4 9M 4k");
        assertSameMap(p("a.raw"));
        assertSameMap("-f", "raw", p("a.raw"));
    }

    @Test
    void chainWithDataZerosAndAShorterBackingFile() throws Exception {
        qemu("create", "-f", "qcow2", p("base.qcow2"), "4M").assertOk();
        io(p("base.qcow2"), "write -P 1 0 1M", "write -z 2M 64k", "write -P 9 3M 128k");
        qemu("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", p("mid.qcow2"), "6M")
                .assertOk();
        io(p("mid.qcow2"), "write -P 2 512k 64k", "write -z 3M 64k", "write -P 5 5M 64k");
        qemu("create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", p("top.qcow2"), "8M")
                .assertOk();
        io(p("top.qcow2"), "write -P 3 64k 4k", "discard 0 64k", "write -P 6 7M 1M");
        assertSameMap(p("base.qcow2"));
        assertSameMap(p("mid.qcow2"));
        assertSameMap(p("top.qcow2"));
        assertSameMap("--start-offset=100", "--max-length=3M", p("top.qcow2"));
        assertSameMap("-U", p("top.qcow2"));
    }

    @Test
    void randomWritesOnSmallClusters() throws Exception {
        long seed = new Random().nextLong();
        Random r = new Random(seed);
        qemu("create", "-f", "qcow2", "-o", "cluster_size=4k", p("a.qcow2"), "2M")
                .assertOk();
        List<String> cmds = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            long off = r.nextInt(512) * 4096L;
            int len = (1 + r.nextInt(8)) * 4096;
            String op = switch (r.nextInt(3)) {
                case 0 -> "write -P " + (1 + r.nextInt(200)) + " ";
                case 1 -> "write -z ";
                default -> "discard ";
            };
            cmds.add(op + off + " " + Math.min(len, (2L << 20) - off));
        }
        io(p("a.qcow2"), cmds.toArray(String[]::new));
        try {
            assertSameMap(p("a.qcow2"));
        } catch (AssertionError e) {
            throw new AssertionError("seed " + seed + ": " + e.getMessage(), e);
        }
    }

    @Test
    void compressedClustersInJsonAndTheHumanRefusal() throws Exception {
        qemu("create", "-f", "raw", p("src.raw"), "1M").assertOk();
        io(p("src.raw"), "write -P 7 0 256k");
        qemu("convert", "-c", "-O", "qcow2", p("src.raw"), p("c.qcow2")).assertOk();
        // qemu-img 7.2's JSON has no "compressed" key; both print the runs without offsets
        assertSameMap(p("c.qcow2"));
    }

    @Test
    void emptyImageAndMissingFile() throws Exception {
        qemu("create", "-f", "qcow2", p("z.qcow2"), "0").assertOk();
        assertSameMap(p("z.qcow2"));
        assertSameMap(p("nope.qcow2"));
    }
}
