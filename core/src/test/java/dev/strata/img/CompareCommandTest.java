package dev.strata.img;

import static dev.strata.img.ImgTool.qemu;
import static dev.strata.img.ImgTool.strata;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code strata img compare} against qemu-img compare on the same pairs of images: same message,
 * same exit code (0 identical, 1 different, 2 error), for equal, different and differently sized
 * images, raw and qcow2 with backing files, strict mode included.
 */
class CompareCommandTest {
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

    private void io(String fmt, String image, String... commands) throws Exception {
        List<String> args = new ArrayList<>(List.of("-f", fmt));
        for (String c : commands) {
            args.add("-c");
            args.add(c);
        }
        args.add(image);
        Interop.qemuIo(args.toArray(String[]::new));
    }

    private void assertSameCompare(String... args) throws Exception {
        List<String> all = new ArrayList<>(List.of("compare"));
        all.addAll(List.of(args));
        ImgTool.Run q = qemu(all.toArray(String[]::new));
        ImgTool.Run s = strata(all.toArray(String[]::new));
        assertThat(s.out()).as("stdout of %s", all).isEqualTo(q.out());
        assertThat(s.exit()).as("exit of %s", all).isEqualTo(q.exit());
        assertThat(s.errNormalized()).as("stderr of %s", all).isEqualTo(q.errNormalized());
    }

    @Test
    void rawImagesEqualDifferentAndOfDifferentSizes() throws Exception {
        for (String n : List.of("a.raw", "b.raw")) {
            qemu("create", "-f", "raw", p(n), "4M").assertOk();
        }
        qemu("create", "-f", "raw", p("c.raw"), "8M").assertOk();
        assertSameCompare(p("a.raw"), p("b.raw"));
        assertSameCompare(p("a.raw"), p("c.raw"));
        assertSameCompare("-s", p("a.raw"), p("c.raw"));
        io("raw", p("c.raw"), "write -P 5 6M 512");
        assertSameCompare(p("a.raw"), p("c.raw"));
        assertSameCompare(p("c.raw"), p("a.raw"));
        io("raw", p("b.raw"), "write -P 5 1000 1");
        assertSameCompare(p("a.raw"), p("b.raw"));
        assertSameCompare("-s", p("a.raw"), p("b.raw"));
        assertSameCompare("-q", p("a.raw"), p("b.raw"));
        io("raw", p("a.raw"), "write -P 5 1000 1");
        assertSameCompare(p("a.raw"), p("b.raw"));
        io("raw", p("a.raw"), "write -P 6 3M 64k");
        io("raw", p("b.raw"), "write -P 6 3M 64k", "write -P 7 3145730 1");
        assertSameCompare(p("a.raw"), p("b.raw"));
    }

    @Test
    void qcow2AgainstRawAndChains() throws Exception {
        qemu("create", "-f", "qcow2", p("base.qcow2"), "4M").assertOk();
        io("qcow2", p("base.qcow2"), "write -P 1 0 1M", "write -z 2M 64k");
        qemu("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", p("top.qcow2"))
                .assertOk();
        io("qcow2", p("top.qcow2"), "write -P 2 512k 64k", "write -z 64k 64k");
        qemu("convert", "-O", "raw", p("top.qcow2"), p("top.raw")).assertOk();
        assertSameCompare(p("top.qcow2"), p("top.raw"));
        assertSameCompare(p("top.raw"), p("top.qcow2"));
        assertSameCompare(p("base.qcow2"), p("top.qcow2"));
        assertSameCompare("-f", "qcow2", "-F", "raw", p("top.qcow2"), p("top.raw"));
        assertSameCompare("-U", p("top.qcow2"), p("base.qcow2"));
        io("raw", p("top.raw"), "write -P 3 2M 4k");
        assertSameCompare(p("top.qcow2"), p("top.raw"));
    }

    @Test
    void strictModeComparesAllocation() throws Exception {
        qemu("create", "-f", "qcow2", p("a.qcow2"), "1M").assertOk();
        qemu("create", "-f", "qcow2", p("b.qcow2"), "1M").assertOk();
        io("qcow2", p("a.qcow2"), "write -P 0 0 64k");
        // same contents (zeros), different allocation
        assertSameCompare(p("a.qcow2"), p("b.qcow2"));
        assertSameCompare("-s", p("a.qcow2"), p("b.qcow2"));
    }

    @Test
    void errorsExitWithTwo() throws Exception {
        qemu("create", "-f", "raw", p("a.raw"), "1M").assertOk();
        assertSameCompare(p("a.raw"), p("nope.raw"));
        assertSameCompare("-f", "raw", "-F", "qcow2", p("a.raw"), p("a.raw"));
        assertThat(strata("compare", p("nope.raw"), p("a.raw")).exit()).isEqualTo(2);
    }
}
