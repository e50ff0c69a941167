package dev.strata.img;

import static dev.strata.img.ImgTool.qemu;
import static dev.strata.img.ImgTool.strata;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.qcow2.Qcow2Header;
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
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code strata img info} against qemu-img info on the same images (made by qemu-img): stdout must
 * be byte-identical in both output formats, and so must the exit code and the error text after
 * the tool's prefix. Both tools look at the same file, so even actual-size must agree.
 */
class InfoCommandTest {
    @TempDir
    Path dir;

    @BeforeEach
    void needQemu() {
        Interop.require("qemu-img");
    }

    private String p(String name) {
        return dir.resolve(name).toString();
    }

    /** Runs info with {@code args} through both tools and asserts identical results. */
    private void assertSameInfo(String... args) throws Exception {
        for (String output : List.of("human", "json")) {
            List<String> all = new ArrayList<>(List.of("info", "--output=" + output));
            all.addAll(List.of(args));
            ImgTool.Run q = qemu(all.toArray(String[]::new));
            ImgTool.Run s = strata(all.toArray(String[]::new));
            assertThat(s.out()).as("stdout of %s", all).isEqualTo(q.out());
            assertThat(s.exit()).as("exit of %s", all).isEqualTo(q.exit());
            assertThat(s.errNormalized()).as("stderr of %s", all).isEqualTo(q.errNormalized());
        }
    }

    @ParameterizedTest
    @ValueSource(
            strings = {
                "64M",
                "1000",
                "1536000",
                "1023999",
                "1047552",
                "123456789",
                "5T",
                "1",
                "0",
            })
    void qcow2OfManySizesPrintsAsQemuDoes(String size) throws Exception {
        qemu("create", "-f", "qcow2", p("a.qcow2"), size).assertOk();
        assertSameInfo(p("a.qcow2"));
    }

    @ParameterizedTest
    @ValueSource(
            strings = {
                "cluster_size=512",
                "cluster_size=2M",
                "lazy_refcounts=on",
                "compat=0.10",
                "preallocation=metadata",
                "compression_type=zstd",
                "refcount_bits=8",
            })
    void qcow2VariantsPrintAsQemuDoes(String options) throws Exception {
        qemu("create", "-f", "qcow2", "-o", options, p("a.qcow2"), "100M").assertOk();
        assertSameInfo(p("a.qcow2"));
        assertSameInfo("-f", "qcow2", p("a.qcow2"));
    }

    @Test
    void rawImagesPrintAsQemuDoes() throws Exception {
        qemu("create", "-f", "raw", p("a.raw"), "10M").assertOk();
        Interop.qemuIo("-f", "raw", "-c", "write -P 7 1M 64k", p("a.raw"));
        assertSameInfo(p("a.raw"));
        assertSameInfo("-f", "raw", p("a.raw"));
        assertSameInfo("--backing-chain", p("a.raw"));
    }

    @Test
    void imageWithPersistentBitmapsPrintsAsQemuDoes() throws Exception {
        imageWithBitmapB0();
        qemu("bitmap", "--add", "-g", "128k", "--disable", p("a.qcow2"), "b1").assertOk();
        qemu("bitmap", "--add", "-g", "512", p("a.qcow2"), "name with spaces and é")
                .assertOk();
        assertThat(qemu("info", p("a.qcow2")).out()).contains("    bitmaps:\n");
        assertSameInfo(p("a.qcow2"));
    }

    @Test
    void bitmapsLeftInUseByAWriterThatDiedPrintAsQemuDoes() throws Exception {
        imageWithBitmapB0();
        // qemu-io marks the bitmap in use when it opens the image writable; dying, it leaves the flag
        Interop.qemuIo("-c", "write 0 64k", "-c", "abort", p("a.qcow2"));
        assertThat(qemu("info", p("a.qcow2")).out()).contains("[0]: in-use");
        assertSameInfo(p("a.qcow2"));
    }

    @ParameterizedTest
    @ValueSource(ints = {16, 17})
    void brokenBitmapDirectoryEntryFailsAsInQemu(int field) throws Exception {
        imageWithBitmapB0();
        // the first entry's type (16: only 1 is defined) or granularity bits (17: at least 9)
        long directory = header(p("a.qcow2")).bitmaps().orElseThrow().directoryOffset();
        poke(p("a.qcow2"), directory + field, new byte[] {2});
        assertThat(qemu("info", p("a.qcow2")).errNormalized()).contains("doesn't satisfy the constraints");
        assertSameInfo(p("a.qcow2"));
    }

    /**
     * An extension whose autoclear bit a program without bitmap support cleared: both list no
     * bitmaps and warn on stderr that they are inconsistent.
     */
    @Test
    void bitmapsExtensionWithItsAutoclearBitClearIsNotListedButWarnedAbout() throws Exception {
        imageWithBitmapB0();
        // autoclear_features, the 8 bytes at 88
        poke(p("a.qcow2"), 88, new byte[8]);
        ImgTool.Run q = qemu("info", p("a.qcow2")).assertOk();
        assertThat(q.out()).doesNotContain("bitmaps");
        assertThat(q.err()).contains("all bitmaps are now considered inconsistent");
        assertSameInfo(p("a.qcow2"));
    }

    /** a.qcow2 (1 MiB) with one persistent bitmap, b0, made by qemu-img. */
    private void imageWithBitmapB0() throws Exception {
        qemu("create", "-f", "qcow2", p("a.qcow2"), "1M").assertOk();
        qemu("bitmap", "--add", p("a.qcow2"), "b0").assertOk();
    }

    private static Qcow2Header header(String file) throws Exception {
        try (FileChannel ch = FileChannel.open(Path.of(file))) {
            return Qcow2Header.parse(ch);
        }
    }

    private static void poke(String file, long offset, byte[] bytes) throws Exception {
        try (FileChannel ch = FileChannel.open(Path.of(file), StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(bytes), offset);
        }
    }

    @Test
    void dirtyImageSaysItWasNotShutDownCleanly() throws Exception {
        qemu("create", "-f", "qcow2", "-o", "lazy_refcounts=on", p("d.qcow2"), "1M")
                .assertOk();
        // qemu-io aborting after a write with lazy refcounts leaves the dirty bit set
        Interop.qemuIo("-c", "write 0 64k", "-c", "abort", p("d.qcow2"));
        assertThat(qemu("info", p("d.qcow2")).out()).contains("cleanly shut down: no");
        assertSameInfo(p("d.qcow2"));
    }

    @Test
    void backingChainOfThreeWithRelativeNames() throws Exception {
        Files.createDirectories(dir.resolve("sub"));
        qemu("create", "-f", "qcow2", p("sub/base.qcow2"), "8M").assertOk();
        qemu("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", p("sub/mid.qcow2"))
                .assertOk();
        qemu("create", "-f", "qcow2", "-b", "sub/mid.qcow2", "-F", "qcow2", p("top.qcow2"))
                .assertOk();
        Interop.qemuIo("-c", "write -P 1 0 1M", p("top.qcow2"));
        assertSameInfo(p("top.qcow2"));
        assertSameInfo("--backing-chain", p("top.qcow2"));
        assertSameInfo("-U", "--backing-chain", p("sub/mid.qcow2"));
    }

    @Test
    void absoluteBackingNameAndRawBacking() throws Exception {
        qemu("create", "-f", "raw", p("base.raw"), "4M").assertOk();
        qemu("create", "-f", "qcow2", "-b", p("base.raw"), "-F", "raw", p("top.qcow2"))
                .assertOk();
        assertSameInfo("--backing-chain", p("top.qcow2"));
    }

    @Test
    void missingBackingFileShowsTheImageButBreaksTheChain() throws Exception {
        qemu("create", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", p("top.qcow2"), "1M")
                .assertOk();
        assertSameInfo(p("top.qcow2"));
        ImgTool.Run q = qemu("info", "--backing-chain", p("top.qcow2"));
        ImgTool.Run s = strata("info", "--backing-chain", p("top.qcow2"));
        // qemu-img prints the error alone; the exit code and the error line must agree
        assertThat(s.exit()).isEqualTo(q.exit()).isEqualTo(1);
        assertThat(s.errNormalized()).isEqualTo(q.errNormalized());
    }

    @Test
    void backingLoopIsReportedNotFollowed() throws Exception {
        qemu("create", "-f", "qcow2", p("a.qcow2"), "1M").assertOk();
        qemu("create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", p("b.qcow2"))
                .assertOk();
        qemu("rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", p("a.qcow2")).assertOk();
        ImgTool.Run q = qemu("info", "--backing-chain", p("b.qcow2"));
        ImgTool.Run s = strata("info", "--backing-chain", p("b.qcow2"));
        assertThat(s.exit()).isEqualTo(q.exit()).isEqualTo(1);
        assertThat(s.errNormalized()).isEqualTo(q.errNormalized());
    }

    @Test
    void missingFileAndUnknownFormatFailAsInQemu() throws Exception {
        qemu("create", "-f", "raw", p("a.raw"), "1M").assertOk();
        assertSameInfo(p("nope.qcow2"));
        assertSameInfo("-f", "foo", p("a.raw"));
        assertSameInfo("-f", "qcow2", p("a.raw"));
    }
}
