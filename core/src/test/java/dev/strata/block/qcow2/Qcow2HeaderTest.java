package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockException;
import dev.strata.testing.Interop;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Parsing and re-encoding headers that qemu-img wrote, and refusing crafted ones in QEMU's words. */
class Qcow2HeaderTest {
    @TempDir
    Path dir;

    private Qcow2Header parse(Path p) throws Exception {
        try (FileChannel ch = FileChannel.open(p)) {
            Qcow2Header h = Qcow2Header.parse(ch);
            h.validate(ch.size());
            return h;
        }
    }

    @Test
    void qemuImgHeaderRoundTrips() throws Exception {
        Path base = dir.resolve("base.qcow2");
        Path top = dir.resolve("top.qcow2");
        Interop.qemuImg("create", "-f", "qcow2", base.toString(), "16M").assertOk();
        Interop.qemuImg("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top.toString())
                .assertOk();
        Qcow2Header h = parse(top);
        assertThat(h.version()).isEqualTo(3);
        assertThat(h.clusterSize()).isEqualTo(65536);
        assertThat(h.size()).isEqualTo(16L << 20);
        assertThat(h.backingFile()).isEqualTo("base.qcow2");
        assertThat(h.backingFormat()).contains("qcow2");
        assertThat(h.refcountBits()).isEqualTo(16);
        assertThat(h.featureNames()).extracting(Qcow2Header.FeatureName::name).contains("dirty bit", "lazy refcounts");
        byte[] onDisk = Arrays.copyOf(Files.readAllBytes(top), h.encode().length);
        assertThat(h.encode()).isEqualTo(onDisk);
    }

    @Test
    void v2HeaderParses() throws Exception {
        Path p = dir.resolve("v2.qcow2");
        Interop.qemuImg("create", "-f", "qcow2", "-o", "compat=0.10", p.toString(), "1M")
                .assertOk();
        Qcow2Header h = parse(p);
        assertThat(h.version()).isEqualTo(2);
        assertThat(h.headerLength()).isEqualTo(72);
        assertThat(h.refcountOrder()).isEqualTo(4);
        byte[] onDisk = Arrays.copyOf(Files.readAllBytes(p), h.encode().length);
        assertThat(h.encode()).isEqualTo(onDisk);
    }

    @Test
    void refusesWhatQemuRefuses() throws Exception {
        Path p = dir.resolve("a.qcow2");
        Interop.qemuImg("create", "-f", "qcow2", p.toString(), "16M").assertOk();
        byte[] good = Files.readAllBytes(p);

        assertThatThrownBy(() -> Qcow2Header.parse(ByteBuffer.wrap(new byte[512])))
                .isInstanceOf(BlockException.class)
                .hasMessage("Image is not in qcow2 format");
        byte[] v4 = good.clone();
        v4[7] = 4;
        assertThatThrownBy(() -> Qcow2Header.parse(ByteBuffer.wrap(v4))).hasMessage("Unsupported qcow2 version 4");

        byte[] inc = good.clone();
        inc[79] = 0x60; // bits 5 and 6
        // rename the feature table's first entry ("dirty bit", bit 0) to bit 5 "foo bit"
        inc[0x79] = 5;
        byte[] foo = "foo bit\0".getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        System.arraycopy(foo, 0, inc, 0x7a, foo.length);
        Qcow2Header h = Qcow2Header.parse(ByteBuffer.wrap(inc));
        // the message qemu-img 7.2 prints for this very image
        assertThat(h.unsupportedFeatures(Qcow2Header.INCOMPAT_KNOWN))
                .contains("Unsupported qcow2 feature(s): foo bit, Unknown incompatible feature: 40");

        byte[] bigL1 = good.clone();
        ByteBuffer.wrap(bigL1).putInt(36, 0x7fffffff);
        assertThatThrownBy(() -> Qcow2Header.parse(ByteBuffer.wrap(bigL1)).validate(good.length))
                .hasMessage("Active L1 table too large");

        byte[] badExt = good.clone();
        ByteBuffer.wrap(badExt).putInt(0x74, 0x7fffffff);
        assertThatThrownBy(() -> Qcow2Header.parse(ByteBuffer.wrap(badExt)))
                .hasMessageContaining("runs past the end of the header area");
    }
}
