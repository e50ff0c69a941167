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
 * {@code strata img bitmap} against {@code qemu-img bitmap}: each command line runs on two copies
 * of the same images, one per tool. Exit codes and stderr must match (tool prefix and automatic
 * node names masked), and so must the result: qemu-img info of the image (disk size masked) and
 * QEMU's reading of every bitmap the image then holds.
 */
class BitmapCommandTest {
    @TempDir
    Path dir;

    private static final List<String> IMAGES = List.of("a.qcow2", "other.qcow2", "v2.qcow2", "r.raw");

    @BeforeEach
    void images() throws Exception {
        Interop.require("qemu-img", "qemu-io", "qemu-nbd", "nbdinfo");
        qemu("create", "-q", "-f", "qcow2", p("a.qcow2"), "16M").assertOk();
        qemu("bitmap", "--add", p("a.qcow2"), "b0").assertOk();
        qemu("bitmap", "--add", "-g", "4096", "--disable", p("a.qcow2"), "off").assertOk();
        Interop.qemuIo(
                        "-f",
                        "qcow2",
                        "-c",
                        "write 0 64k",
                        "-c",
                        "write 5M 100k",
                        "-c",
                        "write 16320k 64k",
                        p("a.qcow2"))
                .assertOk();
        qemu("create", "-q", "-f", "qcow2", p("other.qcow2"), "16M").assertOk();
        qemu("bitmap", "--add", "-g", "512", p("other.qcow2"), "src").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write 7M 3k", p("other.qcow2")).assertOk();
        qemu("create", "-q", "-f", "qcow2", "-o", "compat=0.10", p("v2.qcow2"), "16M")
                .assertOk();
        qemu("create", "-q", "-f", "raw", p("r.raw"), "16M").assertOk();
    }

    private String p(String name) {
        return dir.resolve(name).toString();
    }

    /** Runs "bitmap" + {@code args} with both tools; IMG, OTHER, V2 and RAW stand for each side's copies. */
    private void both(String... args) throws Exception {
        for (String name : IMAGES) {
            for (String side : List.of("q-", "s-")) {
                Files.copy(dir.resolve(name), dir.resolve(side + name), StandardCopyOption.REPLACE_EXISTING);
            }
        }
        ImgTool.Run q = qemu(command("q-", args));
        ImgTool.Run s = strata(command("s-", args));
        String what = "bitmap " + String.join(" ", args);
        assertThat(s.exit())
                .as("exit of %s (qemu: %s, strata: %s)", what, q.err(), s.err())
                .isEqualTo(q.exit());
        assertThat(normal(s.errNormalized(), "s-")).as("stderr of %s", what).isEqualTo(normal(q.errNormalized(), "q-"));
        assertThat(s.out()).as("stdout of %s", what).isEqualTo(q.out());
        String mine = info("s-");
        assertThat(mine).as("the image after %s", what).isEqualTo(info("q-"));
        ImgTool.assertBitmapsReadAlike(mine, dir.resolve("s-a.qcow2"), dir.resolve("q-a.qcow2"), what);
        if (s.exit() == 0) {
            assertThat(qemu("check", p("s-a.qcow2")).exit())
                    .as("check after %s", what)
                    .isZero();
        }
    }

    private String[] command(String prefix, String... args) {
        List<String> out = new ArrayList<>(List.of("bitmap"));
        for (String a : args) {
            out.add(
                    switch (a) {
                        case "IMG" -> p(prefix + "a.qcow2");
                        case "OTHER" -> p(prefix + "other.qcow2");
                        case "V2" -> p(prefix + "v2.qcow2");
                        case "RAW" -> p(prefix + "r.raw");
                        default -> a;
                    });
        }
        return out.toArray(String[]::new);
    }

    private static String normal(String err, String prefix) {
        return err.replace(prefix, "X-").replaceAll("#block\\d+", "#blockN");
    }

    private String info(String prefix) throws Exception {
        return qemu("info", p(prefix + "a.qcow2"))
                .assertOk()
                .out()
                .replace(prefix, "X-")
                .replaceAll("disk size: .*", "disk size: <masked>");
    }

    @Test
    void operationsChangeTheImageAsQemuImgDoes() throws Exception {
        both("--add", "IMG", "n");
        both("--add", "-g", "64k", "--disable", "IMG", "n");
        both("--add", "-g", "0", "IMG", "n");
        both("--remove", "IMG", "b0");
        both("--clear", "IMG", "b0");
        both("--disable", "IMG", "b0");
        both("--enable", "IMG", "off");
        both("--merge", "b0", "IMG", "off");
        both("--merge", "src", "-b", "OTHER", "-F", "qcow2", "IMG", "off");
        both("--merge", "src", "-b", "OTHER", "IMG", "b0");
        both("--add", "--merge", "b0", "--merge", "off", "--disable", "IMG", "sum");
        both("--clear", "--enable", "--remove", "IMG", "off");
    }

    @Test
    void refusalsReadAsQemuImgs() throws Exception {
        both("IMG", "b0");
        both("--add", "IMG", "b0");
        both("--add", "IMG", "");
        both("--add", "-g", "100", "IMG", "x");
        both("--add", "-g", "1x", "IMG", "x");
        both("-g", "4096", "--clear", "IMG", "b0");
        both("-F", "qcow2", "--clear", "IMG", "b0");
        both("-b", "OTHER", "--clear", "IMG", "b0");
        both("--add", "IMG");
        both("--add", "IMG", "x", "extra");
        both("--remove", "IMG", "nob");
        both("--merge", "nob", "IMG", "b0");
        both("--merge", "b0", "IMG", "nob");
        both("--add", "V2", "x");
        both("--add", "-f", "raw", "RAW", "x");
        both("--add", "-f", "qcow2", "nofile", "x");
        both("--add", "--remove", "--remove", "IMG", "x");
        both("--merge", "src", "-b", "nofile", "IMG", "b0");
    }
}
