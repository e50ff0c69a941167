package dev.strata.block;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link BlockNode#truncate} on raw nodes: the file follows (with a raw window's offset), data
 * before the end stays, the new area reads as zeros, the bitmaps follow; QEMU's refusals come
 * before anything changes (a busy bitmap included).
 */
class BlockNodeResizeTest {
    private static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    private BlockNode raw(BlockGraph g, Path file, String extra) throws Exception {
        BlockOptions o = BlockOptions.empty()
                .put("driver", "raw")
                .put("node-name", "r")
                .put("file", BlockOptions.empty().put("driver", "file").put("filename", file.toString()));
        if (extra.equals("offset")) {
            o.put("offset", MiB);
        } else if (extra.equals("size")) {
            o.put("size", MiB);
        }
        return g.add(o);
    }

    private Path file(String name, long size, byte fill) throws Exception {
        Path p = dir.resolve(name);
        byte[] b = new byte[(int) size];
        Arrays.fill(b, fill);
        Files.write(p, b);
        return p;
    }

    @Test
    void aRawNodeGrowsAndShrinksWithItsFileAndItsBitmaps() throws Exception {
        Path p = file("a.raw", 4 * MiB, (byte) 7);
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = raw(g, p, "");
            DirtyBitmap b = n.bitmaps().add("b", n.length(), 65536, false);
            n.write(3 * MiB, ByteBuffer.wrap(new byte[4096]));
            n.write(MiB, ByteBuffer.wrap(new byte[4096]));
            n.truncate(8 * MiB);
            assertThat(n.length()).isEqualTo(8 * MiB);
            assertThat(Files.size(p)).isEqualTo(8 * MiB);
            assertThat(b.count()).as("growing keeps both bits and adds none").isEqualTo(2 * 65536);
            byte[] tail = new byte[(int) (4 * MiB)];
            n.read(4 * MiB, ByteBuffer.wrap(tail));
            assertThat(tail).as("the new area").containsOnly(0);

            n.truncate(2 * MiB + 512);
            assertThat(Files.size(p)).isEqualTo(2 * MiB + 512);
            assertThat(b.count()).as("the bit past the new end is dropped").isEqualTo(65536);
            assertThat(b.length()).isEqualTo(2 * MiB + 512);
        }
        Interop.Result info = Interop.qemuImg("info", "-f", "raw", p.toString()).assertOk();
        assertThat(info.stdout()).contains("virtual size: 2 MiB (2097664 bytes)");
    }

    @Test
    void aRawWindowWithAnOffsetMovesItsFileEndAndAFixedOneIsRefused() throws Exception {
        Path p = file("w.raw", 4 * MiB, (byte) 1);
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = raw(g, p, "offset");
            n.truncate(MiB);
            assertThat(n.length()).isEqualTo(MiB);
            assertThat(Files.size(p)).as("offset + size").isEqualTo(2 * MiB);
        }
        Path q = file("f.raw", 4 * MiB, (byte) 1);
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = raw(g, q, "size");
            assertThatThrownBy(() -> n.truncate(2 * MiB)).hasMessage("Cannot resize fixed-size raw disks");
            assertThat(Files.size(q)).isEqualTo(4 * MiB);
        }
    }

    @Test
    void refusalsComeInQemusOrderAndChangeNothing() throws Exception {
        Path p = file("a.raw", 4 * MiB, (byte) 7);
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = raw(g, p, "");
            assertThatThrownBy(() -> n.truncate(-1)).hasMessage("Image size cannot be negative");
            assertThatThrownBy(() -> n.truncate(BlockNode.MAX_LENGTH + 1))
                    .hasMessage("offset(9223372035781033985) exceeds maximum(9223372035781033984)");
            DirtyBitmap b = n.bitmaps().add("b", n.length(), 65536, false);
            n.write(3 * MiB, ByteBuffer.wrap(new byte[4096]));
            n.bitmaps().hold(b);
            assertThatThrownBy(() -> n.truncate(MiB))
                    .isInstanceOf(BlockException.class)
                    .hasMessage("Bitmap 'b' is currently in use by another operation and cannot be used");
            assertThat(n.length()).isEqualTo(4 * MiB);
            assertThat(Files.size(p)).isEqualTo(4 * MiB);
            n.bitmaps().unhold(b);
            assertThat(b.count()).isEqualTo(65536);
        }
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = g.openImage(p.toString(), "raw", OpenFlags.READ_ONLY);
            assertThatThrownBy(() -> n.truncate(MiB)).hasMessage("Image is read-only");
            n.close();
        }
    }
}
