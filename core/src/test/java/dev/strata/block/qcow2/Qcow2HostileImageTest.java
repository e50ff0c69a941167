package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenContext;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Images built to hurt a reader: each must be refused (at open, or at the first access of the
 * damaged part) with a {@link BlockException} that says what is wrong: never an out-of-memory
 * error, an endless loop (the timeout guards that), or a read outside the file.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class Qcow2HostileImageTest {
    // header field offsets from the qcow2 specification
    private static final int BACKING_FILE_OFFSET = 8;
    private static final int SIZE = 24;
    private static final int L1_SIZE = 36;
    private static final int L1_TABLE_OFFSET = 40;
    private static final int REFCOUNT_TABLE_OFFSET = 48;

    @TempDir
    Path dir;

    Path image;

    @BeforeEach
    void makeImage() throws Exception {
        image = dir.resolve("hostile.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", image.toString(), "4M").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write -P 0x11 0 1M", image.toString())
                .assertOk();
    }

    private BlockNode open(Path p, OpenFlags flags) throws IOException {
        return Drivers.newGraph().openImage(p.toString(), "qcow2", flags);
    }

    private void readAll(BlockNode node) throws IOException {
        byte[] buf = new byte[1 << 20];
        for (long off = 0; off < node.length(); off += buf.length) {
            node.read(off, buf, 0, (int) Math.min(buf.length, node.length() - off));
        }
    }

    private void poke(long offset, byte[] bytes) throws IOException {
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(bytes), offset);
        }
    }

    private void pokeLong(long offset, long value) throws IOException {
        poke(offset, ByteBuffer.allocate(8).putLong(0, value).array());
    }

    private void pokeInt(long offset, int value) throws IOException {
        poke(offset, ByteBuffer.allocate(4).putInt(0, value).array());
    }

    private long peekLong(long offset) throws IOException {
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(8);
            ch.read(b, offset);
            return b.getLong(0);
        }
    }

    @Test
    void truncatedHeader() throws IOException {
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
            ch.truncate(40);
        }
        assertThatThrownBy(() -> open(image, OpenFlags.READ_ONLY))
                .isInstanceOf(BlockException.class)
                .hasMessageFindingMatch("(?i)header|qcow2|truncated|short");
    }

    @Test
    void wrongMagic() throws IOException {
        poke(0, new byte[] {'Q', 'F', 'X', (byte) 0xfb});
        assertThatThrownBy(() -> open(image, OpenFlags.READ_ONLY))
                .isInstanceOf(BlockException.class)
                .hasMessageContaining("not in qcow2 format");
        assertThat(Drivers.newGraph().probe(image.toString())).isEqualTo("raw");
    }

    @Test
    void l1TableClaimingOverHundredGigabytes() throws IOException {
        // 2^31-1 entries of 8 bytes (16 GiB of table, mapping a 1 EiB disk) in a file of a few
        // hundred KiB: a reader that trusts it allocates the table or reads far past the file
        pokeLong(SIZE, 1L << 60);
        pokeInt(L1_SIZE, Integer.MAX_VALUE);
        assertThatThrownBy(() -> open(image, OpenFlags.READ_ONLY))
                .isInstanceOf(BlockException.class)
                .hasMessageFindingMatch("(?i)L1|too large|size");
    }

    @Test
    void l2OffsetPastTheEndOfTheFile() throws IOException {
        long l1 = peekLong(L1_TABLE_OFFSET);
        // COPIED flag + an L2 table 1 TiB into a file of a few hundred KiB
        pokeLong(l1, (1L << 63) | (1L << 40));
        BlockNode node;
        try {
            node = open(image, OpenFlags.READ_ONLY);
        } catch (BlockException refusedAtOpen) {
            assertThat(refusedAtOpen.getMessage()).isNotBlank();
            return;
        }
        try (node) {
            assertThatThrownBy(() -> readAll(node))
                    .isInstanceOf(BlockException.class)
                    .hasMessageFindingMatch("(?i)L2|offset|end|corrupt");
        }
    }

    @Test
    void refcountTableOverlappingL1() throws Exception {
        long l1 = peekLong(L1_TABLE_OFFSET);
        pokeLong(REFCOUNT_TABLE_OFFSET, l1);
        // read-write: a writer that trusted this table would overwrite the L1 table with refcounts
        assertThatThrownBy(() -> {
                    try (BlockNode node = open(image, OpenFlags.READ_WRITE)) {
                        node.write(2 << 20, new byte[65536], 0, 65536);
                        node.flush();
                    }
                })
                .isInstanceOf(BlockException.class)
                .hasMessageFindingMatch("(?i)overlap|refcount|corrupt");
        Interop.Result info = Interop.qemuImg("info", image.toString());
        assertThat(info.exitCode())
                .as("QEMU can still read the header: %s", info.stderr())
                .isZero();
    }

    @Test
    void backingFileLoop() throws Exception {
        Path a = dir.resolve("a.qcow2");
        Path b = dir.resolve("b.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", a.toString(), "1M").assertOk();
        Interop.qemuImg("create", "-q", "-f", "qcow2", "-b", a.toString(), "-F", "qcow2", b.toString())
                .assertOk();
        Interop.qemuImg("rebase", "-u", "-b", b.toString(), "-F", "qcow2", a.toString())
                .assertOk();
        assertThatThrownBy(() -> open(a, OpenFlags.READ_ONLY))
                .isInstanceOf(BlockException.class)
                .hasMessageContaining("infinite loop");
    }

    @Test
    void chainDeeperThanTheLimit() throws Exception {
        Path prev = dir.resolve("layer0.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", prev.toString(), "1M").assertOk();
        byte[] template = Files.readAllBytes(dir.resolve("layer0.qcow2"));
        // writing the layers by hand is 100x faster than 130 qemu-img processes; one real one anchors it
        for (int i = 1; i <= OpenContext.MAX_CHAIN_DEPTH + 2; i++) {
            Path next = dir.resolve("layer" + i + ".qcow2");
            Files.write(next, withBacking(template, prev.getFileName().toString()));
            prev = next;
        }
        Interop.qemuImg("info", "-U", dir.resolve("layer1.qcow2").toString()).assertOk();
        Path top = prev;
        assertThatThrownBy(() -> open(top, OpenFlags.READ_ONLY))
                .isInstanceOf(BlockException.class)
                .hasMessageContaining("deeper than");
    }

    @Test
    void backingFileNameRunningPastTheFile() throws IOException {
        pokeLong(BACKING_FILE_OFFSET, peekLong(L1_TABLE_OFFSET) - 4);
        pokeInt(16, 1000);
        assertThatThrownBy(() -> open(image, OpenFlags.READ_ONLY)).isInstanceOf(BlockException.class);
    }

    /** The image bytes with a backing file name stored right after the header, as qemu-img places it. */
    private static byte[] withBacking(byte[] template, String backing) {
        ByteBuffer b = ByteBuffer.wrap(template.clone());
        int headerLength = b.getInt(100);
        // after the header extensions QEMU wrote (ending with the end-of-extensions marker)
        int pos = headerLength;
        while (b.getInt(pos) != 0) {
            int len = b.getInt(pos + 4);
            pos += 8 + ((len + 7) & ~7);
        }
        int nameAt = pos + 8;
        byte[] name = backing.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        b.put(nameAt, name);
        b.putLong(BACKING_FILE_OFFSET, nameAt);
        b.putInt(16, name.length);
        return b.array();
    }
}
