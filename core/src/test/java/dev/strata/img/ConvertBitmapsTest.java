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

/**
 * {@code strata img convert --bitmaps} against qemu-img's: the same exit codes and messages, and
 * targets that qemu-img info lists alike and whose bitmaps QEMU reads alike.
 */
class ConvertBitmapsTest {
    @TempDir
    Path dir;

    @BeforeEach
    void images() throws Exception {
        Interop.require("qemu-img", "qemu-io", "qemu-nbd", "nbdinfo");
        qemu("create", "-q", "-f", "qcow2", p("src.qcow2"), "16M").assertOk();
        qemu("bitmap", "--add", p("src.qcow2"), "b0").assertOk();
        qemu("bitmap", "--add", "-g", "512", "--disable", p("src.qcow2"), "b1").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write 1M 64k", "-c", "write 9M 3k", p("src.qcow2"))
                .assertOk();
        qemu("bitmap", "--merge", "b0", p("src.qcow2"), "b1").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write 12M 1M", p("src.qcow2")).assertOk();
        // a source whose bitmaps a killed writer left in use
        Files.copy(dir.resolve("src.qcow2"), dir.resolve("broken.qcow2"));
        Interop.run("qemu-io", "-f", "qcow2", "-c", "write 0 4k", "-c", "sigraise 9", p("broken.qcow2"));
        assertThat(qemu("info", p("broken.qcow2")).out()).contains("in-use");
    }

    private String p(String name) {
        return dir.resolve(name).toString();
    }

    /** Converts {@code source} with both tools into q-/s-OUT; compares the outcome. */
    private void both(String source, String out, String... options) throws Exception {
        List<String> q = new ArrayList<>(List.of("convert"));
        q.addAll(List.of(options));
        List<String> s = new ArrayList<>(q);
        q.addAll(List.of(p(source), p("q-" + out)));
        s.addAll(List.of(p(source), p("s-" + out)));
        ImgTool.Run qr = qemu(q.toArray(String[]::new));
        ImgTool.Run sr = strata(s.toArray(String[]::new));
        String what = "convert " + String.join(" ", options) + " " + source;
        assertThat(sr.exit())
                .as("exit of %s (qemu: %s, strata: %s)", what, qr.err(), sr.err())
                .isEqualTo(qr.exit());
        assertThat(normal(sr.errNormalized(), "s-"))
                .as("stderr of %s", what)
                .isEqualTo(normal(qr.errNormalized(), "q-"));
        assertThat(Files.exists(dir.resolve("s-" + out)))
                .as("target of %s made", what)
                .isEqualTo(Files.exists(dir.resolve("q-" + out)));
        if (qr.exit() == 0 && out.endsWith(".qcow2")) {
            String info = info("s-" + out);
            assertThat(info).as("target of %s", what).isEqualTo(info("q-" + out));
            ImgTool.assertBitmapsReadAlike(info, dir.resolve("s-" + out), dir.resolve("q-" + out), what);
            assertThat(qemu("check", p("s-" + out)).exit()).isZero();
        }
    }

    private static String normal(String err, String prefix) {
        return err.replace(prefix, "X-")
                .replace("'qemu-img bitmap --remove'", "'TOOL bitmap --remove'")
                .replace("'strata img bitmap --remove'", "'TOOL bitmap --remove'");
    }

    private String info(String image) throws Exception {
        return qemu("info", p(image)).assertOk().out().replace(image, "X").replaceAll("disk size: .*", "");
    }

    @Test
    void bitmapsAreCopiedAsQemuImgCopiesThem() throws Exception {
        both("src.qcow2", "a.qcow2", "-O", "qcow2", "--bitmaps");
        both("src.qcow2", "b.qcow2", "-O", "qcow2", "--bitmaps", "-o", "cluster_size=4096");
        both("src.qcow2", "c.qcow2", "-O", "qcow2", "--bitmaps", "-c");
        both("broken.qcow2", "d.qcow2", "-O", "qcow2", "--bitmaps", "--skip-broken-bitmaps");
        both("src.qcow2", "e.qcow2", "-O", "qcow2");
    }

    @Test
    void refusalsReadAsQemuImgs() throws Exception {
        both("broken.qcow2", "f.qcow2", "-O", "qcow2", "--bitmaps");
        both("src.qcow2", "g.raw", "-O", "raw", "--bitmaps");
        // a version 2 target (which Strata does not create): qemu-img makes it, convert -n fills it
        for (String side : List.of("q-", "s-")) {
            qemu("create", "-q", "-f", "qcow2", "-o", "compat=0.10", p(side + "h.qcow2"), "16M")
                    .assertOk();
        }
        both("src.qcow2", "h.qcow2", "-n", "-O", "qcow2", "--bitmaps");
        both("src.qcow2", "i.qcow2", "-O", "qcow2", "--skip-broken-bitmaps");
    }
}
