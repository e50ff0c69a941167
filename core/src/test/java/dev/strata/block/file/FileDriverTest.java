package dev.strata.block.file;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.strata.block.BlockException;
import dev.strata.block.Extent;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** FileDriver against a byte-array model: I/O inside and past the end, zeroing, holes, block status. */
class FileDriverTest {
    private static final int BLOCK = 4096;

    @TempDir
    Path dir;

    private Path file;

    @BeforeEach
    void createFile() throws IOException {
        file = dir.resolve("img.raw");
        Files.createFile(file);
    }

    @Test
    void hostRunsCopyBetweenFilesAndReadZerosPastTheSourcesEnd() throws IOException {
        byte[] data = new byte[3 << 20];
        new Random(7).nextBytes(data);
        Path other = Files.write(dir.resolve("src.raw"), data);
        try (FileDriver src = FileDriver.open(other.toString(), true);
                FileDriver dst = FileDriver.open(file.toString(), false)) {
            // inside the source, into the middle of an empty target (the kernel copies)
            assertThat(src.copyTo(5, 1000, dst, 1 << 20)).isEqualTo(1000);
            // a run that reaches 4 KiB past the source's end: the rest reads as zeros
            assertThat(dst.writeHost(0, src.hostRun((3 << 20) - 8192, 12288))).isTrue();
            byte[] expect = new byte[(1 << 20) + 1000];
            System.arraycopy(data, (3 << 20) - 8192, expect, 0, 8192);
            System.arraycopy(data, 5, expect, 1 << 20, 1000);
            ByteBuffer got = ByteBuffer.allocate(expect.length);
            dst.read(0, got);
            assertThat(got.array()).isEqualTo(expect);
            assertThat(dst.length()).isEqualTo(expect.length);

            // sendTo: the bytes, then zeros past the end, into any channel
            java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
            src.sendTo((3 << 20) - 100, 300, java.nio.channels.Channels.newChannel(out));
            byte[] sent = out.toByteArray();
            assertThat(sent).hasSize(300);
            assertThat(Arrays.copyOf(sent, 100)).isEqualTo(Arrays.copyOfRange(data, (3 << 20) - 100, 3 << 20));
            assertThat(Arrays.copyOfRange(sent, 100, 300)).containsOnly(0);
        }
    }

    @Test
    void aFlushGoesToTheDiskOnlyWhenSomethingChangedSinceTheLastOne() throws IOException {
        Path other = Files.write(dir.resolve("src.raw"), new byte[8192]);
        try (FileDriver src = FileDriver.open(other.toString(), true);
                FileDriver d = FileDriver.open(file.toString(), false)) {
            d.flush();
            assertThat(d.syncCount()).as("nothing written since the open").isZero();
            long syncs = 0;
            List<IoStep> changes = List.of(
                    () -> d.write(0, ByteBuffer.wrap(new byte[] {1, 2, 3})),
                    () -> d.writeZeroes(4096, 8192, false),
                    () -> d.writeZeroes(0, 4096, true),
                    () -> d.writeHost(16384, src.hostRun(0, 8192)),
                    () -> d.discard(0, 4096),
                    () -> d.truncate(1 << 20));
            for (IoStep change : changes) {
                change.run();
                d.flush();
                assertThat(d.syncCount()).as("a flush after a change").isEqualTo(++syncs);
                d.flush();
                d.flush();
                assertThat(d.syncCount()).as("flushes with nothing new").isEqualTo(syncs);
            }
            // reading changes nothing
            d.read(0, ByteBuffer.allocate(4096));
            d.flush();
            assertThat(d.syncCount()).isEqualTo(syncs);
        }
    }

    @FunctionalInterface
    private interface IoStep {
        void run() throws IOException;
    }

    @Test
    void readsPastTheEndAreZerosAndDoNotGrowTheFile() throws IOException {
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            d.write(0, ByteBuffer.wrap(bytes(100, (byte) 7)));
            ByteBuffer buf = ByteBuffer.allocate(300);
            d.read(50, buf);
            assertThat(buf.position()).isEqualTo(300);
            byte[] expected = new byte[300];
            Arrays.fill(expected, 0, 50, (byte) 7);
            assertThat(buf.array()).isEqualTo(expected);
            assertThat(d.length()).isEqualTo(100);
        }
    }

    @Test
    void writesPastTheEndGrowTheFileAndLeaveAHole() throws IOException {
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            d.write(10 * BLOCK + 5, ByteBuffer.wrap(bytes(10, (byte) 1)));
            assertThat(d.length()).isEqualTo(10 * BLOCK + 15);
            assertThat(Files.size(file)).isEqualTo(10 * BLOCK + 15);
            List<Extent> map = d.blockStatus(0, d.length());
            assertThat(map.getFirst()).isEqualTo(new Extent(0, 10 * BLOCK, Extent.Kind.ZERO, 0, 0, file.toString()));
            assertThat(map.getLast())
                    .isEqualTo(new Extent(10 * BLOCK, 15, Extent.Kind.DATA, 0, 10 * BLOCK, file.toString()));
        }
    }

    @Test
    void blockStatusPastTheEndIsZero() throws IOException {
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            d.write(0, ByteBuffer.wrap(bytes(BLOCK, (byte) 1)));
            assertThat(d.blockStatus(BLOCK, 3 * BLOCK))
                    .containsExactly(new Extent(BLOCK, 3 * BLOCK, Extent.Kind.ZERO, 0, BLOCK, file.toString()));
            assertThat(d.blockStatus(BLOCK - 1, 2))
                    .containsExactly(
                            new Extent(BLOCK - 1, 1, Extent.Kind.DATA, 0, BLOCK - 1, file.toString()),
                            new Extent(BLOCK, 1, Extent.Kind.ZERO, 0, BLOCK, file.toString()));
        }
    }

    @ParameterizedTest
    @ValueSource(booleans = {true, false})
    void writeZeroesPastTheEndGrowsWithoutData(boolean mayUnmap) throws IOException {
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            d.write(0, ByteBuffer.wrap(bytes(2 * BLOCK, (byte) 9)));
            d.writeZeroes(BLOCK, 64 * BLOCK, mayUnmap);
            assertThat(d.length()).isEqualTo(65 * BLOCK);
            assertThat(read(d, 0, 65 * BLOCK)).isEqualTo(concat(bytes(BLOCK, (byte) 9), new byte[64 * BLOCK]));
            // the first block still holds data; past the old end only a hole was added (the zeroed
            // block inside the file may stay allocated without unmap)
            assertThat(d.blockStatus(0, BLOCK))
                    .containsExactly(new Extent(0, BLOCK, Extent.Kind.DATA, 0, 0, file.toString()));
            assertThat(d.blockStatus(2 * BLOCK, 63 * BLOCK))
                    .containsExactly(
                            new Extent(2 * BLOCK, 63 * BLOCK, Extent.Kind.ZERO, 0, 2 * BLOCK, file.toString()));
            if (mayUnmap) {
                assertThat(d.blockStatus(BLOCK, BLOCK))
                        .containsExactly(new Extent(BLOCK, BLOCK, Extent.Kind.ZERO, 0, BLOCK, file.toString()));
            }
        }
    }

    @Test
    void punchedRangeIsAHoleAndFreesSpace() throws IOException {
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            d.write(0, ByteBuffer.wrap(bytes(256 * BLOCK, (byte) 3)));
            d.flush();
            long before = d.allocatedFileSize();
            assertThat(before).isGreaterThanOrEqualTo(256L * BLOCK);
            d.writeZeroes(16 * BLOCK, 128 * BLOCK, true);
            assertThat(d.allocatedFileSize()).isLessThanOrEqualTo(before - 128L * BLOCK);
            d.discard(200 * BLOCK, 8 * BLOCK);
            assertThat(d.allocatedFileSize()).isLessThanOrEqualTo(before - 136L * BLOCK);
            assertThat(d.blockStatus(0, d.length()))
                    .extracting(Extent::kind, Extent::offset, Extent::length)
                    .containsExactly(
                            org.assertj.core.groups.Tuple.tuple(Extent.Kind.DATA, 0L, 16L * BLOCK),
                            org.assertj.core.groups.Tuple.tuple(Extent.Kind.ZERO, 16L * BLOCK, 128L * BLOCK),
                            org.assertj.core.groups.Tuple.tuple(Extent.Kind.DATA, 144L * BLOCK, 56L * BLOCK),
                            org.assertj.core.groups.Tuple.tuple(Extent.Kind.ZERO, 200L * BLOCK, 8L * BLOCK),
                            org.assertj.core.groups.Tuple.tuple(Extent.Kind.DATA, 208L * BLOCK, 48L * BLOCK));
            assertThat(d.length()).isEqualTo(256L * BLOCK);
        }
    }

    @Test
    void writeZeroesWithoutUnmapReadsAsZerosAndKeepsTheSize() throws IOException {
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            d.write(0, ByteBuffer.wrap(bytes(8 * BLOCK, (byte) 5)));
            d.writeZeroes(BLOCK + 3, 2 * BLOCK, false);
            byte[] expected = bytes(8 * BLOCK, (byte) 5);
            Arrays.fill(expected, BLOCK + 3, 3 * BLOCK + 3, (byte) 0);
            assertThat(read(d, 0, 8 * BLOCK)).isEqualTo(expected);
            assertThat(d.length()).isEqualTo(8 * BLOCK);
        }
    }

    @Test
    void allocatedFileSizeIsWhatStatReports() throws Exception {
        Interop.require("stat");
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            d.truncate(64L << 20);
            d.write(5L << 20, ByteBuffer.wrap(bytes(3 * BLOCK + 1, (byte) 1)));
            d.flush();
            String[] stat = Interop.run("stat", "-c", "%b %B", file.toString())
                    .assertOk()
                    .stdout()
                    .trim()
                    .split(" ", 2);
            long expected = Long.parseLong(stat[0]) * Long.parseLong(stat[1]);
            assertThat(d.allocatedFileSize()).isEqualTo(expected);
            // a sparse 64 MiB file with 12 KiB of data is nowhere near its apparent size
            assertThat(expected).isLessThan(1L << 20);
        }
    }

    @Test
    void truncateShrinksAndGrowsSparsely() throws IOException {
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            d.write(0, ByteBuffer.wrap(bytes(4 * BLOCK, (byte) 2)));
            d.truncate(BLOCK + 1);
            assertThat(d.length()).isEqualTo(BLOCK + 1);
            d.truncate(100 * BLOCK);
            assertThat(d.length()).isEqualTo(100 * BLOCK);
            assertThat(read(d, 0, 3 * BLOCK)).isEqualTo(concat(bytes(BLOCK + 1, (byte) 2), new byte[2 * BLOCK - 1]));
            assertThat(d.blockStatus(2 * BLOCK, 98 * BLOCK))
                    .containsExactly(
                            new Extent(2 * BLOCK, 98 * BLOCK, Extent.Kind.ZERO, 0, 2 * BLOCK, file.toString()));
        }
    }

    @Test
    void refusesWhatIsNotARegularFile() {
        assertThatThrownBy(() -> FileDriver.open(dir.toString(), true))
                .isInstanceOf(BlockException.class)
                .hasMessage("'file' driver requires '" + dir + "' to be a regular file");
        assertThatThrownBy(() -> FileDriver.open(dir.resolve("missing").toString(), true))
                .isInstanceOf(BlockException.class)
                .hasMessage("Could not open '" + dir.resolve("missing") + "': No such file or directory");
    }

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8})
    void randomOperationsMatchAByteArrayModel(long seed) throws Throwable {
        assumeTrue(Posix.AVAILABLE, "native layer not available on this platform");
        try {
            runModel(seed);
        } catch (Throwable t) {
            throw new AssertionError("seed " + seed + ": " + t.getMessage(), t);
        }
    }

    /**
     * The model: the file's bytes and size. Discarded bytes become unknown (a discard may leave
     * them or zero them) until written again.
     */
    private void runModel(long seed) throws IOException {
        Random rnd = new Random(seed);
        int capacity = 3 << 20;
        byte[] model = new byte[capacity];
        BitSet unknown = new BitSet(capacity);
        long size = 0;
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            for (int step = 0; step < 300; step++) {
                long off = randomOffset(rnd, 2 << 20);
                int len = randomLength(rnd);
                int op = rnd.nextInt(10);
                String what;
                if (op < 4) {
                    byte[] data = new byte[len];
                    rnd.nextBytes(data);
                    if (rnd.nextBoolean()) {
                        Arrays.fill(data, 0, len / 2, (byte) 0);
                    }
                    d.write(off, ByteBuffer.wrap(data));
                    System.arraycopy(data, 0, model, (int) off, len);
                    unknown.clear((int) off, (int) off + len);
                    size = Math.max(size, off + len);
                    what = "write";
                } else if (op < 7) {
                    boolean unmap = rnd.nextBoolean();
                    d.writeZeroes(off, len, unmap);
                    Arrays.fill(model, (int) off, (int) off + len, (byte) 0);
                    unknown.clear((int) off, (int) off + len);
                    size = Math.max(size, off + len);
                    what = "writeZeroes unmap=" + unmap;
                } else if (op < 9) {
                    d.discard(off, len);
                    long end = Math.min(size, off + len);
                    if (end > off) {
                        unknown.set((int) off, (int) end);
                    }
                    what = "discard";
                } else {
                    long newSize = randomOffset(rnd, 2 << 20);
                    d.truncate(newSize);
                    if (newSize < size) {
                        Arrays.fill(model, (int) newSize, (int) size, (byte) 0);
                        unknown.clear((int) newSize, (int) size);
                    }
                    size = newSize;
                    what = "truncate";
                }
                String ctx = "step " + step + " " + what + " off=" + off + " len=" + len;
                assertThat(d.length()).as(ctx).isEqualTo(size);
                long from = randomOffset(rnd, (int) size + 2 * BLOCK);
                int n = randomLength(rnd);
                checkRead(d, model, unknown, from, n, ctx);
                checkBlockStatus(d, model, unknown, size, ctx);
            }
            checkRead(d, model, unknown, 0, (int) size + BLOCK, "final");
        }
    }

    private static long randomOffset(Random rnd, int bound) {
        long base = (long) rnd.nextInt(Math.max(1, bound / BLOCK)) * BLOCK;
        return switch (rnd.nextInt(4)) {
            case 0 -> base;
            case 1 -> base + 1;
            case 2 -> Math.max(0, base - 1);
            default -> rnd.nextInt(Math.max(1, bound));
        };
    }

    private static int randomLength(Random rnd) {
        return switch (rnd.nextInt(4)) {
            case 0 -> 1 + rnd.nextInt(512);
            case 1 -> BLOCK * (1 + rnd.nextInt(16));
            case 2 -> BLOCK * (1 + rnd.nextInt(16)) + 1;
            default -> 1 + rnd.nextInt(256 * 1024);
        };
    }

    private static void checkRead(FileDriver d, byte[] model, BitSet unknown, long from, int n, String ctx)
            throws IOException {
        byte[] actual = read(d, from, n);
        for (int i = 0; i < n; i++) {
            int pos = (int) from + i;
            byte expected = pos < model.length ? model[pos] : 0;
            if (!unknown.get(pos) && actual[i] != expected) {
                throw new AssertionError(ctx + ": byte at " + pos + " reads " + actual[i] + ", model says " + expected);
            }
        }
    }

    /**
     * Block status covers the range without gaps; a ZERO run really reads as zeros; every byte the
     * model knows to be non-zero lies in a DATA run.
     */
    private static void checkBlockStatus(FileDriver d, byte[] model, BitSet unknown, long size, String ctx)
            throws IOException {
        long end = size + 2 * BLOCK;
        long pos = 0;
        while (pos < end) {
            List<Extent> extents = d.blockStatus(pos, end - pos);
            assertThat(extents).as(ctx).isNotEmpty();
            for (Extent e : extents) {
                assertThat(e.offset()).as(ctx).isEqualTo(pos);
                assertThat(e.end()).as(ctx).isLessThanOrEqualTo(end);
                assertThat(e.hostOffset()).as(ctx).isEqualTo(e.offset());
                if (e.kind() == Extent.Kind.ZERO) {
                    byte[] actual = read(d, e.offset(), (int) e.length());
                    for (int i = 0; i < actual.length; i++) {
                        int p = (int) e.offset() + i;
                        if (actual[i] != 0) {
                            throw new AssertionError(ctx + ": ZERO extent " + e + " reads " + actual[i] + " at " + p);
                        }
                        if (p < model.length && model[p] != 0 && !unknown.get(p)) {
                            throw new AssertionError(ctx + ": ZERO extent " + e + " but the model has data at " + p);
                        }
                    }
                } else {
                    assertThat(e.kind()).as(ctx).isEqualTo(Extent.Kind.DATA);
                    assertThat(e.end()).as(ctx + ": DATA past the end").isLessThanOrEqualTo(size);
                }
                pos = e.end();
            }
        }
    }

    static byte[] read(FileDriver d, long offset, int length) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(length);
        d.read(offset, buf);
        return buf.array();
    }

    static byte[] bytes(int n, byte value) {
        byte[] b = new byte[n];
        Arrays.fill(b, value);
        return b;
    }

    private static byte[] concat(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
