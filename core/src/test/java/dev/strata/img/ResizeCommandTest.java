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
 * {@code strata img resize} against {@code qemu-img resize} on copies of the same images: the
 * same exit code, the same standard output, the same standard error (apart from the tool's
 * prefix), and where both succeed, images that read the same, have the same size and pass
 * {@code qemu-img check}.
 */
class ResizeCommandTest {
    @TempDir
    Path dir;

    @BeforeEach
    void images() throws Exception {
        Interop.require("qemu-img");
        Interop.require("qemu-io");
        qemu("create", "-q", "-f", "qcow2", p("a.qcow2"), "64M").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write -P 3 0 1M", "-c", "write -P 4 60M 4M", p("a.qcow2"))
                .assertOk();
        qemu("create", "-q", "-f", "raw", p("r.raw"), "64M").assertOk();
        Interop.qemuIo("-f", "raw", "-c", "write -P 5 1M 1M", p("r.raw")).assertOk();
        qemu("create", "-q", "-f", "qcow2", "-o", "compat=0.10", p("v2.qcow2"), "4M")
                .assertOk();
        qemu("snapshot", "-c", "s1", p("v2.qcow2")).assertOk();
        qemu("create", "-q", "-f", "qcow2", p("base.qcow2"), "16M").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write -P 6 0 16M", p("base.qcow2")).assertOk();
        qemu("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", p("top.qcow2"), "4M")
                .assertOk();
        qemu("create", "-q", "-f", "qcow2", p("bm.qcow2"), "4M").assertOk();
        qemu("bitmap", "--add", p("bm.qcow2"), "b0").assertOk();
    }

    private String p(String name) {
        return dir.resolve(name).toString();
    }

    /**
     * Runs "resize" + {@code args} with both tools, FILE, RAW, V2 and TOP standing for their own
     * copies of a.qcow2, r.raw, v2.qcow2 and top.qcow2; asserts the same results.
     */
    private void both(String... args) throws Exception {
        for (String name : List.of("a.qcow2", "r.raw", "v2.qcow2", "top.qcow2")) {
            Files.copy(dir.resolve(name), dir.resolve("q-" + name), StandardCopyOption.REPLACE_EXISTING);
            Files.copy(dir.resolve(name), dir.resolve("s-" + name), StandardCopyOption.REPLACE_EXISTING);
        }
        ImgTool.Run q = qemu(command("q-", args));
        ImgTool.Run s = strata(command("s-", args));
        String what = "resize " + String.join(" ", args);
        assertThat(s.exit()).as("exit of %s (qemu: %s)", what, q.err()).isEqualTo(q.exit());
        assertThat(s.out()).as("stdout of %s", what).isEqualTo(q.out());
        assertThat(normal(s.errNormalized(), "s-")).as("stderr of %s", what).isEqualTo(normal(q.errNormalized(), "q-"));
        if (q.exit() == 0) {
            for (String name : List.of("a.qcow2", "r.raw", "v2.qcow2", "top.qcow2")) {
                String fmt = name.endsWith(".raw") ? "raw" : "qcow2";
                assertThat(qemu("compare", "-f", fmt, "-F", fmt, p("s-" + name), p("q-" + name))
                                .exit())
                        .as("%s: %s reads as qemu-img's", what, name)
                        .isZero();
                assertThat(info(p("s-" + name), fmt))
                        .as("%s: size of %s", what, name)
                        .isEqualTo(info(p("q-" + name), fmt));
                if (fmt.equals("qcow2")) {
                    assertThat(qemu("check", p("s-" + name)).exit())
                            .as("%s: check %s", what, name)
                            .isZero();
                }
            }
        }
    }

    private String[] command(String prefix, String... args) {
        List<String> out = new ArrayList<>(List.of("resize"));
        for (String a : args) {
            out.add(
                    switch (a) {
                        case "FILE" -> p(prefix + "a.qcow2");
                        case "RAW" -> p(prefix + "r.raw");
                        case "V2" -> p(prefix + "v2.qcow2");
                        case "TOP" -> p(prefix + "top.qcow2");
                        default -> a;
                    });
        }
        return out.toArray(String[]::new);
    }

    private static String normal(String err, String prefix) {
        return err.replace(prefix, "X-")
                .replace("'strata img --help'", "'TOOL --help'")
                .replace("'qemu-img --help'", "'TOOL --help'");
    }

    private static String info(String image, String fmt) throws Exception {
        return qemu("info", "-f", fmt, "--output=json", image)
                .assertOk()
                .out()
                .replaceAll("(?s).*\"virtual-size\": (\\d+).*", "$1");
    }

    @Test
    void argumentsAreReadAsQemuImgReadsThem() throws Exception {
        both();
        both("FILE");
        both("-q");
        both("FILE", "1G", "extra");
        both("-U", "FILE", "1G");
        both("--bogus", "FILE", "1G");
        both("-f", "FILE", "1G");
        both("FILE", "1G", "--shrink");
        both("FILE", "--shrink", "1G");
        both("FILE", "--", "-1M");
        both("--preallocation=bogus", "FILE", "1G");
        both("--preallocation", "FILE", "64M");
        both("--preallocation=full", "FILE", "64M");
        both("--preallocation=off", "FILE", "128M");
        both("-q", "FILE", "128M");
        both("FILE", "+1M");
        both(p("nonexist.qcow2"), "1G");
        both("-f", "nofmt", "FILE", "1G");
    }

    @Test
    void sizesAreParsedAsQemuParsesThem() throws Exception {
        for (String size : List.of(
                "abc",
                "1X",
                "-1X",
                "1e6",
                "1kB",
                ".5M",
                "1.5",
                "+-1M",
                "1.5e3M",
                "0x",
                "0x1.5M",
                "16E",
                "17E",
                "+16E",
                "16Ex",
                "99999999999999999999",
                "-99999999999999999999",
                "99999999999999999999x",
                "0",
                "-64M",
                "-1G",
                "9E",
                "8E",
                "15E",
                "+9E",
                "+8E",
                "64M",
                "+0",
                "-0",
                "65.5M",
                "++1M",
                " 65M",
                "0x4100000",
                "0x41M",
                "65537k",
                "1T",
                "--shrink")) {
            both("FILE", size);
        }
        for (String size : List.of(
                "1.M", "1.0M", "1.25M", "0x100000", "0x10M", "1b", "1B", "100000", "-1M", "+1k", "2.5k", "0.000001M")) {
            both("--shrink", "FILE", size);
        }
    }

    @Test
    void refusalsReadAsQemuImgs() throws Exception {
        both("FILE", "-1M");
        both("FILE", "67108865");
        both("FILE", "7E");
        both("FILE", "3P");
        both("V2", "8M");
        both("-f", "raw", "RAW", "7E");
        both("-f", "raw", "RAW", "9223372035781033985");
        both("-f", "raw", "RAW", "100001");
    }

    @Test
    void resizesReadAsQemuImgs() throws Exception {
        both("--shrink", "FILE", "32M");
        both("--shrink", "FILE", "1M");
        both("FILE", "+10G");
        both("RAW", "128M");
        both("--shrink", "-f", "raw", "RAW", "100001");
        both("-f", "raw", "FILE", "1G");
        both("TOP", "12M");
        both("TOP", "20M");
        both("--shrink", "TOP", "1M");
    }

    /**
     * An image with persistent bitmaps resizes as with qemu-img: the bitmaps follow the new size
     * (bits past a shrunken end go, new area is clean), and QEMU reads the same bits from both.
     */
    @Test
    void persistentBitmapsFollowTheResizeAsWithQemuImg() throws Exception {
        Interop.require("qemu-nbd", "nbdinfo");
        Interop.qemuIo("-f", "qcow2", "-c", "write 0 64k", "-c", "write 3M 1M", p("bm.qcow2"))
                .assertOk();
        Files.copy(dir.resolve("bm.qcow2"), dir.resolve("q-bm.qcow2"));
        Files.copy(dir.resolve("bm.qcow2"), dir.resolve("s-bm.qcow2"));
        for (List<String> resize : List.of(List.of("8M"), List.of("--shrink", "3200k"))) {
            for (String side : List.of("q-", "s-")) {
                List<String> args = new ArrayList<>(List.of("resize"));
                args.addAll(resize.subList(0, resize.size() - 1));
                args.add(p(side + "bm.qcow2"));
                args.add(resize.getLast());
                String[] a = args.toArray(String[]::new);
                ImgTool.Run r = side.equals("q-") ? qemu(a) : strata(a);
                assertThat(r.exit()).as("%s%s: %s", side, resize, r.err()).isZero();
            }
            assertThat(bitmapInfo("s-"))
                    .as("after resize %s", resize)
                    .contains("name: b0")
                    .isEqualTo(bitmapInfo("q-"));
            assertThat(qemu("check", p("s-bm.qcow2")).exit()).isZero();
            assertThat(Interop.qemuBitmapMap(dir.resolve("s-bm.qcow2"), "b0"))
                    .as("QEMU's reading of b0 after resize %s", resize)
                    .isEqualTo(Interop.qemuBitmapMap(dir.resolve("q-bm.qcow2"), "b0"));
        }
    }

    /** qemu-img info of a side's copy of bm.qcow2, its name and disk size masked. */
    private String bitmapInfo(String side) throws Exception {
        return qemu("info", p(side + "bm.qcow2")).out().replace(side, "X-").replaceAll("disk size: .*", "");
    }
}
