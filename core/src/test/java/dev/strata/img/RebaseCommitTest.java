package dev.strata.img;

import static dev.strata.img.ImgTool.qemu;
import static dev.strata.img.ImgTool.strata;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code strata img rebase} and {@code commit} against qemu-img's on copies of the same chain:
 * the same files afterwards (byte for byte for rebase -u, same contents and same qemu-img map for
 * the others) and the same messages and exit codes.
 */
class RebaseCommitTest {
    @TempDir
    Path dir;

    @BeforeEach
    void chain() throws Exception {
        Interop.require("qemu-img");
        Interop.require("qemu-io");
        qemu("create", "-f", "qcow2", p("a.qcow2"), "4M").assertOk();
        io(p("a.qcow2"), "write -P 1 0 2M", "write -z 3M 64k");
        qemu("create", "-f", "qcow2", p("b.qcow2"), "4M").assertOk();
        io(p("b.qcow2"), "write -P 1 0 1M", "write -P 7 3M 64k");
        qemu("create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", p("t.qcow2"))
                .assertOk();
        io(p("t.qcow2"), "write -P 2 512k 64k", "write -P 3 1536k 8k");
        qemu("convert", "-O", "raw", p("t.qcow2"), p("t-before.raw")).assertOk();
    }

    private String p(String name) {
        return dir.resolve(name).toString();
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

    /** Copies {@code name} to "q-name" and "s-name" (same directory, so relative backing names still work). */
    private void copies(String name) throws Exception {
        Files.copy(dir.resolve(name), dir.resolve("q-" + name), StandardCopyOption.REPLACE_EXISTING);
        Files.copy(dir.resolve(name), dir.resolve("s-" + name), StandardCopyOption.REPLACE_EXISTING);
    }

    private String map(String image) throws Exception {
        return qemu("map", "--output=json", image).assertOk().out();
    }

    /** Runs {@code args} + FILE with both tools on their copies of {@code name}; asserts the same results. */
    private void both(String name, String... args) throws Exception {
        List<String> qa = new ArrayList<>(List.of(args));
        List<String> sa = new ArrayList<>(List.of(args));
        qa.add(p("q-" + name));
        sa.add(p("s-" + name));
        ImgTool.Run q = qemu(qa.toArray(String[]::new));
        ImgTool.Run s = strata(sa.toArray(String[]::new));
        assertThat(s.exit()).as("exit of %s (qemu: %s)", sa, q.err()).isEqualTo(q.exit());
        assertThat(s.out()).as("stdout of %s", sa).isEqualTo(q.out());
        assertThat(s.errNormalized().replace("s-" + name, "q-" + name))
                .as("stderr of %s", sa)
                .isEqualTo(q.errNormalized());
    }

    @Test
    void unsafeRebaseRewritesTheHeaderAsQemuDoes() throws Exception {
        for (List<String> args : List.of(
                List.of("rebase", "-u", "-b", "b.qcow2", "-F", "qcow2"),
                List.of("rebase", "-u", "-b", "nonexist.qcow2", "-F", "qcow2"),
                List.of("rebase", "-u", "-b", ""),
                List.of("rebase", "-u"),
                List.of("rebase", "-u", "-b", "b.qcow2"),
                List.of("rebase", "-u", "-b", "b.qcow2", "-F", "nofmt"),
                List.of("rebase", "-u", "-b", "x".repeat(1024), "-F", "qcow2"),
                List.of("rebase", "-u", "-b", "y".repeat(1023), "-F", "qcow2"))) {
            copies("t.qcow2");
            both("t.qcow2", args.toArray(String[]::new));
            assertThat(Files.mismatch(dir.resolve("s-t.qcow2"), dir.resolve("q-t.qcow2")))
                    .as(
                            "bytes after rebase %s",
                            args.size() > 3
                                    ? args.get(3)
                                            .substring(
                                                    0, Math.min(20, args.get(3).length()))
                                    : args)
                    .isEqualTo(-1);
        }
    }

    @Test
    void safeRebaseKeepsWhatTheImageReads() throws Exception {
        for (List<String> args : List.of(
                List.of("rebase", "-b", "b.qcow2", "-F", "qcow2"), List.of("rebase", "-b", "", "-F", "qcow2"))) {
            copies("t.qcow2");
            both("t.qcow2", args.toArray(String[]::new));
            assertThat(qemu("compare", p("s-t.qcow2"), p("t-before.raw")).exit())
                    .isZero();
            assertThat(map(p("s-t.qcow2")).replace("s-t.qcow2", "X"))
                    .isEqualTo(map(p("q-t.qcow2")).replace("q-t.qcow2", "X"));
            assertThat(qemu("check", p("s-t.qcow2")).exit()).isZero();
        }
        copies("t.qcow2");
        both("t.qcow2", "rebase", "-b", "nonexist.qcow2", "-F", "qcow2");
        assertThat(Files.mismatch(dir.resolve("s-t.qcow2"), dir.resolve("t.qcow2")))
                .isEqualTo(-1);
    }

    @Test
    void commitWritesTheOverlayIntoItsBaseAndEmptiesIt() throws Exception {
        Files.copy(dir.resolve("a.qcow2"), dir.resolve("q-a.qcow2"));
        Files.copy(dir.resolve("a.qcow2"), dir.resolve("s-a.qcow2"));
        qemu("create", "-f", "qcow2", "-b", "q-a.qcow2", "-F", "qcow2", p("q-top.qcow2"))
                .assertOk();
        qemu("create", "-f", "qcow2", "-b", "s-a.qcow2", "-F", "qcow2", p("s-top.qcow2"))
                .assertOk();
        for (String t : List.of("q-top.qcow2", "s-top.qcow2")) {
            io(p(t), "write -P 2 512k 1M", "write -z 0 64k", "write -P 4 3M 4k");
        }
        qemu("convert", "-O", "raw", p("q-top.qcow2"), p("top-before.raw")).assertOk();
        ImgTool.Run q = qemu("commit", p("q-top.qcow2"));
        ImgTool.Run s = strata("commit", p("s-top.qcow2"));
        assertThat(s.out()).isEqualTo(q.out()).isEqualTo("Image committed.\n");
        assertThat(s.exit()).isEqualTo(q.exit()).isZero();
        assertThat(qemu("compare", p("s-a.qcow2"), p("top-before.raw")).exit()).isZero();
        assertThat(qemu("compare", p("s-top.qcow2"), p("top-before.raw")).exit())
                .isZero();
        assertThat(map(p("s-top.qcow2")).replace("s-a.qcow2", "X"))
                .isEqualTo(map(p("q-top.qcow2")).replace("q-a.qcow2", "X"));
        assertThat(map(p("s-a.qcow2")).replace("s-a.qcow2", "X"))
                .isEqualTo(map(p("q-a.qcow2")).replace("q-a.qcow2", "X"));
        assertThat(qemu("check", p("s-a.qcow2")).exit()).isZero();
        assertThat(qemu("check", p("s-top.qcow2")).exit()).isZero();
    }

    /**
     * Images with persistent bitmaps: commit's writes into the base and rebase's writes into the
     * image are recorded in their bitmaps as with qemu-img, and the bitmaps are stored again at the
     * end (qemu-img info lists the same, QEMU reads the same bits from both sides' images).
     */
    @Test
    void persistentBitmapsRecordCommitAndRebaseAsWithQemuImg() throws Exception {
        Interop.require("qemu-nbd", "nbdinfo");
        for (String side : List.of("q-", "s-")) {
            Files.copy(dir.resolve("a.qcow2"), dir.resolve(side + "a.qcow2"));
            qemu("bitmap", "--add", p(side + "a.qcow2"), "base").assertOk();
            qemu("create", "-f", "qcow2", "-b", side + "a.qcow2", "-F", "qcow2", p(side + "top.qcow2"))
                    .assertOk();
            io(p(side + "top.qcow2"), "write -P 2 512k 1M", "write -z 0 64k", "write -P 4 3M 4k");
        }
        ImgTool.Run q = qemu("commit", p("q-top.qcow2"));
        ImgTool.Run s = strata("commit", p("s-top.qcow2"));
        assertThat(s.exit()).as("commit: %s", s.err()).isEqualTo(q.exit()).isZero();
        assertBitmapsAlike("a.qcow2", "commit");

        copies("t.qcow2");
        for (String side : List.of("q-", "s-")) {
            qemu("bitmap", "--add", p(side + "t.qcow2"), "top").assertOk();
            qemu("bitmap", "--add", "--disable", p(side + "t.qcow2"), "off").assertOk();
        }
        both("t.qcow2", "rebase", "-b", "b.qcow2", "-F", "qcow2");
        assertBitmapsAlike("t.qcow2", "rebase");
        both("t.qcow2", "rebase", "-u", "-b", "a.qcow2", "-F", "qcow2");
        assertBitmapsAlike("t.qcow2", "rebase -u");
    }

    /** qemu-img info and check of both sides' copies of {@code name} agree, and QEMU reads each bitmap alike. */
    private void assertBitmapsAlike(String name, String what) throws Exception {
        String info = qemu("info", p("s-" + name)).assertOk().out();
        assertThat(info).as("bitmaps after %s", what).contains("bitmaps:");
        assertThat(masked(info, "s-"))
                .as("qemu-img info after %s", what)
                .isEqualTo(masked(qemu("info", p("q-" + name)).assertOk().out(), "q-"));
        assertThat(qemu("check", p("s-" + name)).exit())
                .as("check after %s", what)
                .isZero();
        ImgTool.assertBitmapsReadAlike(info, dir.resolve("s-" + name), dir.resolve("q-" + name), what);
    }

    private static String masked(String info, String side) {
        return info.replace(side, "X-").replaceAll("disk size: .*", "");
    }

    @Test
    void commitWithoutBackingFileFails() throws Exception {
        copies("a.qcow2");
        both("a.qcow2", "commit");
        qemu("create", "-f", "raw", p("r.raw"), "1M").assertOk();
        copies("r.raw");
        both("r.raw", "commit", "-f", "raw");
    }
}
