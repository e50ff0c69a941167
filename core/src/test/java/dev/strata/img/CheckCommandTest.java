package dev.strata.img;

import static dev.strata.img.ImgTool.qemu;
import static dev.strata.img.ImgTool.strata;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code strata img check} against qemu-img check: the command's wiring (format choice, output
 * formats, repair modes, exit codes 0/2/3/63) on a clean image, one with a leaked cluster and one
 * with a corrupted refcount, each run by both tools on its own copy.
 */
class CheckCommandTest {
    /** Fresh 1 MiB qcow2 image, 64 KiB clusters: refcount block in cluster 2, 16-bit entries. */
    private static final long REFCOUNT_BLOCK = 0x20000;

    @TempDir
    Path dir;

    @BeforeEach
    void needQemu() {
        Interop.require("qemu-img");
    }

    private Path fresh(String name) throws Exception {
        Path p = dir.resolve(name);
        qemu("create", "-f", "qcow2", p.toString(), "1M").assertOk();
        return p;
    }

    private static void setRefcount(Path image, int cluster, int value) throws Exception {
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(2).putShort(0, (short) value), REFCOUNT_BLOCK + 2L * cluster);
        }
    }

    /** Runs check with {@code args} on two copies of {@code image}, one per tool, and asserts the same results. */
    private void assertSameCheck(Path image, String... args) throws Exception {
        Path q = dir.resolve("q-" + image.getFileName());
        Path s = dir.resolve("s-" + image.getFileName());
        for (String output : List.of("human", "json")) {
            Files.copy(image, q, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            Files.copy(image, s, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            List<String> qa = new ArrayList<>(List.of("check", "--output=" + output));
            qa.addAll(List.of(args));
            List<String> sa = new ArrayList<>(qa);
            qa.add(q.toString());
            sa.add(s.toString());
            ImgTool.Run qr = qemu(qa.toArray(String[]::new));
            ImgTool.Run sr = strata(sa.toArray(String[]::new));
            String qn = q.getFileName().toString();
            String sn = s.getFileName().toString();
            assertThat(sr.exit()).as("exit of %s", sa).isEqualTo(qr.exit());
            assertThat(sr.out().replace(sn, qn)).as("stdout of %s", sa).isEqualTo(qr.out());
            assertThat(sr.errNormalized().replace(sn, qn))
                    .as("stderr of %s", sa)
                    .isEqualTo(qr.errNormalized());
            if (args.length > 0) {
                // after a repair both images must check the same again
                assertThat(qemu("check", s.toString()).exit())
                        .isEqualTo(qemu("check", q.toString()).exit());
            }
        }
    }

    @Test
    void cleanImage() throws Exception {
        Path p = fresh("clean.qcow2");
        Interop.qemuIo("-c", "write -P 1 0 256k", p.toString());
        assertSameCheck(p);
        assertSameCheck(p, "-U");
        assertSameCheck(p, "-f", "qcow2");
    }

    @Test
    void leakedClusterExitsWithThreeAndIsRepaired() throws Exception {
        Path p = fresh("leak.qcow2");
        // an unreferenced cluster 5 with refcount 1 at the end of the file: a leak
        setRefcount(p, 5, 1);
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(1), 6 * 65536L - 1);
        }
        assertThat(qemu("check", p.toString()).exit()).isEqualTo(3);
        assertSameCheck(p);
        assertSameCheck(p, "-r", "leaks");
        assertSameCheck(p, "-r", "all");
    }

    @Test
    void corruptedRefcountExitsWithTwo() throws Exception {
        Path p = fresh("corrupt.qcow2");
        // the L1 table's cluster (3) loses its refcount: a corruption
        setRefcount(p, 3, 0);
        assertThat(qemu("check", p.toString()).exit()).isEqualTo(2);
        assertSameCheck(p);
        assertSameCheck(p, "-r", "all");
    }

    @Test
    void rawHasNoChecksAndMissingFilesFail() throws Exception {
        qemu("create", "-f", "raw", dir.resolve("a.raw").toString(), "1M").assertOk();
        for (List<String> args : List.of(
                List.of("check", dir.resolve("a.raw").toString()),
                List.of(
                        "check",
                        "--output=json",
                        "-f",
                        "raw",
                        dir.resolve("a.raw").toString()),
                List.of("check", dir.resolve("nope.qcow2").toString()),
                List.of("check", "-r", "bogus", dir.resolve("a.raw").toString()))) {
            ImgTool.Run q = qemu(args.toArray(String[]::new));
            ImgTool.Run s = strata(args.toArray(String[]::new));
            assertThat(s.exit()).as("exit of %s", args).isEqualTo(q.exit());
            // for a bad -r qemu-img adds "Try 'qemu-img --help'", which names itself: first lines only
            assertThat(s.errNormalized().lines().findFirst())
                    .as("stderr of %s", args)
                    .isEqualTo(q.errNormalized().lines().findFirst());
            assertThat(s.errNormalized().lines().count())
                    .isLessThanOrEqualTo(q.errNormalized().lines().count());
            assertThat(s.out()).isEqualTo(q.out());
        }
        assertThat(strata("check", dir.resolve("a.raw").toString()).exit()).isEqualTo(63);
    }
}
