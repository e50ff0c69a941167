package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Persistent bitmaps at the block layer, checked against QEMU's own reading of the image (qemu-nbd
 * exports a bitmap, nbdinfo maps it): what Strata stores is what QEMU loads, what QEMU stored is
 * what Strata loads, a writable open marks the bitmaps in use on disk, and an image whose bitmaps
 * would not fit in memory is refused.
 */
class Qcow2PersistentBitmapsTest {
    @TempDir
    Path dir;

    /**
     * A new image of {@code size} bytes whose persistent bitmap "b" (recording) Strata stored at
     * close after a guest write of {@code written} bytes at 0 (none for 0).
     */
    private static void imageWithBitmap(Path p, long size, long granularity, int written) throws Exception {
        TestImages.createQcow2(p, Qcow2Create.Options.of(size));
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, false)) {
            n.bitmaps().add("b", size, granularity, false, true);
            if (written > 0) {
                n.write(0, ByteBuffer.allocate(written));
            }
        }
    }

    private static BlockNode open(BlockGraph g, Path p, boolean readOnly) throws IOException {
        return g.openImage(p.toString(), "qcow2", readOnly ? OpenFlags.READ_ONLY : OpenFlags.READ_WRITE);
    }

    /**
     * Seeded random writes recorded by bitmaps of several granularities on an image whose size is
     * not a multiple of them; closed, the image holds bits QEMU reads exactly as the model says,
     * and Strata loads them back unchanged.
     */
    @ParameterizedTest(name = "cluster {0}, size {1}, seed {2}")
    @CsvSource({"65536, 67109376, 1", "512, 3146240, 2", "4096, 20971520, 3"})
    void whatStrataStoresIsWhatQemuLoads(int clusterSize, long size, long seed) throws Exception {
        Interop.require("qemu-nbd");
        Interop.require("nbdinfo");
        Path p = dir.resolve("s.qcow2");
        TestImages.createQcow2(
                p, new Qcow2Create.Options(size, clusterSize, null, null, Qcow2Create.Preallocation.OFF, false, "1.1"));
        List<Long> granularities = List.of(512L, 65536L, 1L << 20);
        Random rnd = new Random(seed);
        Map<String, String> sha = new TreeMap<>();
        List<long[]> writes = new ArrayList<>();
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, false)) {
            for (long gran : granularities) {
                n.bitmaps().add("g" + gran, size, gran, false, true);
            }
            n.bitmaps().add("off", size, 4096, true, true);
            n.bitmaps().add("temp", size, 4096, false, false);
            for (int i = 0; i < 40; i++) {
                long len = 1 + rnd.nextInt(rnd.nextBoolean() ? 4096 : 300_000);
                long off = (long) (rnd.nextDouble() * (size - len));
                n.write(off, ByteBuffer.allocate((int) len));
                writes.add(new long[] {off, len});
            }
            n.write(size - 1, ByteBuffer.allocate(1));
            writes.add(new long[] {size - 1, 1});
            for (DirtyBitmap b : n.bitmaps().all()) {
                sha.put(b.name(), b.sha256());
            }
        }
        Images.assertCheckClean(p, "after the store");
        for (long gran : granularities) {
            assertThat(dirtyRanges(p, "g" + gran))
                    .as("QEMU's reading of g%d", gran)
                    .isEqualTo(model(writes, gran, size));
        }
        assertThat(dirtyRanges(p, "off")).as("a disabled bitmap stores empty").isEmpty();
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, true)) {
            Map<String, String> loaded = new TreeMap<>();
            for (DirtyBitmap b : n.bitmaps().all()) {
                loaded.put(b.name(), b.sha256());
                assertThat(b.persistent()).isTrue();
                assertThat(b.readOnly()).isTrue();
                assertThat(b.enabled()).as(b.name()).isEqualTo(!b.name().equals("off"));
            }
            sha.remove("temp");
            assertThat(loaded).as("the bits Strata loads back").isEqualTo(sha);
        }
    }

    /** QEMU's bitmaps (recording, disabled, written by qemu-io) load with QEMU's bits. */
    @Test
    void whatQemuStoresIsWhatStrataLoads() throws Exception {
        Interop.require("qemu-nbd");
        Interop.require("nbdinfo");
        Path p = dir.resolve("q.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", p.toString(), "32M").assertOk();
        Interop.qemuImg("bitmap", "--add", "-g", "4096", p.toString(), "a").assertOk();
        Interop.qemuIo("-f", "qcow2", "-c", "write 100k 1M", "-c", "write 31M 4k", "-c", "write -z 5M 8k", p.toString())
                .assertOk();
        Interop.qemuImg("bitmap", "--add", "--disable", p.toString(), "d").assertOk();
        Interop.qemuImg("bitmap", "--merge", "a", p.toString(), "d").assertOk();
        List<List<Long>> qemuA = dirtyRanges(p, "a");
        List<List<Long>> qemuD = dirtyRanges(p, "d");
        assertThat(qemuA).hasSize(3);
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, false)) {
            DirtyBitmap a = n.bitmaps().lookup("a");
            DirtyBitmap d = n.bitmaps().lookup("d");
            assertThat(a.enabled()).isTrue();
            assertThat(d.enabled()).isFalse();
            assertThat(ranges(a)).isEqualTo(qemuA);
            assertThat(ranges(d)).isEqualTo(qemuD);
            // while open for writing, QEMU sees them in use
            assertThat(Interop.qemuImg("info", "-U", p.toString()).stdout()).contains("[0]: in-use");
            n.write(20 << 20, ByteBuffer.allocate(512));
        }
        assertThat(Interop.qemuImg("info", p.toString()).stdout()).doesNotContain("in-use");
        assertThat(dirtyRanges(p, "a")).contains(List.of((long) 20 << 20, 4096L));
        Images.assertCheckClean(p, "after Strata stored QEMU's bitmaps");
    }

    /** A copy of the file taken while Strata has it open for writing is what a crash leaves. */
    @Test
    void aCrashLeavesTheBitmapsInconsistent() throws Exception {
        Path p = dir.resolve("c.qcow2");
        Path crashed = dir.resolve("crashed.qcow2");
        imageWithBitmap(p, 8 << 20, 65536, 0);
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, false)) {
            n.write(0, ByteBuffer.allocate(4096));
            Files.copy(p, crashed);
        }
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, crashed, false)) {
            DirtyBitmap b = n.bitmaps().lookup("b");
            assertThat(b.inconsistent()).isTrue();
            assertThat(b.recording()).isFalse();
            assertThatThrownBy(() -> n.bitmaps().clear("b"))
                    .hasMessage("Bitmap 'b' is inconsistent and cannot be used");
        }
        if (Interop.onPath("qemu-nbd")) {
            assertThat(Interop.run(
                                    "qemu-nbd",
                                    "-r",
                                    "-f",
                                    "qcow2",
                                    "-B",
                                    "b",
                                    "-k",
                                    dir.resolve("x.sock").toString(),
                                    crashed.toString())
                            .stderr())
                    .contains("Bitmap 'b' is inconsistent and cannot be used");
        }
    }

    @Test
    void bitmapsTooLargeForMemoryAreRefused() throws Exception {
        Path p = dir.resolve("m.qcow2");
        imageWithBitmap(p, 64 << 20, 512, 1 << 20);
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, true)) {
            ImageFile file = new ImageFile(n.file().orElseThrow());
            Qcow2Header h = Qcow2Header.read(file::read, file.length());
            Qcow2BitmapStore store =
                    new Qcow2BitmapStore(file, h.clusterSize(), Qcow2CheckBitmaps.readDirectory(file, h));
            assertThat(store.load(h.size(), 1 << 20)).hasSize(1);
            assertThatThrownBy(() -> store.load(h.size(), 65535))
                    .isInstanceOf(BlockException.class)
                    .hasMessageContaining("they would take");
        }
    }

    /** A bitmap table entry pointing past the end of the file refuses the image, in words that say so. */
    @Test
    void bitmapDataOutsideTheFileIsRefused() throws Exception {
        Path p = dir.resolve("h.qcow2");
        imageWithBitmap(p, 8 << 20, 65536, 512);
        long tableOffset;
        try (var ch = java.nio.channels.FileChannel.open(p, java.nio.file.StandardOpenOption.READ)) {
            Qcow2Header h = Qcow2Header.parse(ch);
            ByteBuffer dirEntry = ByteBuffer.allocate(8);
            ch.read(dirEntry, h.bitmaps().orElseThrow().directoryOffset());
            tableOffset = dirEntry.getLong(0);
        }
        try (var ch = java.nio.channels.FileChannel.open(p, java.nio.file.StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(8).putLong(0, 1L << 40), tableOffset);
        }
        try (BlockGraph g = Drivers.newGraph()) {
            assertThatThrownBy(() -> open(g, p, true))
                    .isInstanceOf(BlockException.class)
                    .hasMessageContaining(
                            "Data of bitmap 'b' at offset 0x10000000000 (65536 bytes) lies outside the image file");
        }
    }

    /**
     * Hostile bitmaps: 400 seeded random damages to the bitmaps extension, the directory, the
     * tables and the data of an image Strata stored. Each open either succeeds, with bitmaps that
     * fit the disk, or fails with a BlockException; nothing else escapes (no out-of-bounds, no
     * negative size, no out-of-memory).
     */
    @Test
    void damagedBitmapsAreRefusedOrLoadedNeverCrash() throws Exception {
        Path p = dir.resolve("d.qcow2");
        TestImages.createQcow2(
                p, new Qcow2Create.Options(4 << 20, 512, null, null, Qcow2Create.Preallocation.OFF, false, "1.1"));
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = open(g, p, false)) {
            n.bitmaps().add("b0", 4 << 20, 512, false, true);
            n.bitmaps().add("b1", 4 << 20, 4096, true, true);
            n.bitmaps().lookup("b1").setDirty(0, 1 << 20);
            n.write(100_000, ByteBuffer.allocate(70_000));
        }
        byte[] image = Files.readAllBytes(p);
        // where the bitmaps live: the header extension, the directory, the tables, the data
        List<long[]> regions = new ArrayList<>();
        Qcow2Header h = Qcow2Header.parse(ByteBuffer.wrap(image));
        Qcow2Header.BitmapsExtension ext = h.bitmaps().orElseThrow();
        regions.add(new long[] {ext.directoryOffset(), ext.directorySize()});
        ByteBuffer img = ByteBuffer.wrap(image);
        for (int e = 0; e < ext.directorySize(); ) {
            long at = ext.directoryOffset() + e;
            long table = img.getLong((int) at);
            int entries = img.getInt((int) at + 8);
            regions.add(new long[] {table, entries * 8L});
            for (int i = 0; i < entries; i++) {
                long data = img.getLong((int) table + 8 * i);
                if (data != 0) {
                    regions.add(new long[] {data, 512});
                }
            }
            e += (int) ((24 + Short.toUnsignedInt(img.getShort((int) at + 18)) + 7) & ~7);
        }
        int extAt = indexOf(
                image, ByteBuffer.allocate(4).putInt(0, Qcow2Header.EXT_BITMAPS).array());
        regions.add(new long[] {extAt, 32});
        Random rnd = new Random(8);
        Path damaged = dir.resolve("damaged.qcow2");
        int opened = 0;
        for (int round = 0; round < 400; round++) {
            byte[] copy = image.clone();
            for (int k = 1 + rnd.nextInt(4); k > 0; k--) {
                long[] r = regions.get(rnd.nextInt(regions.size()));
                int at = (int) (r[0] + rnd.nextInt((int) r[1]));
                copy[at] = switch (rnd.nextInt(4)) {
                    case 0 -> (byte) 0xff;
                    case 1 -> 0;
                    case 2 -> (byte) (copy[at] ^ (1 << rnd.nextInt(8)));
                    default -> (byte) rnd.nextInt(256);
                };
            }
            Files.write(damaged, copy);
            try (BlockGraph g = Drivers.newGraph();
                    BlockNode n = open(g, damaged, true)) {
                opened++;
                for (DirtyBitmap b : n.bitmaps().all()) {
                    assertThat(b.count())
                            .isLessThanOrEqualTo(
                                    ((4L << 20) + b.granularity() - 1) / b.granularity() * b.granularity());
                }
            } catch (BlockException refused) {
                assertThat(refused.getMessage()).as("round %d", round).isNotBlank();
            }
        }
        assertThat(opened)
                .as("some damages still open (flags, bits)")
                .isPositive()
                .isLessThan(400);
    }

    private static int indexOf(byte[] haystack, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= haystack.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (haystack[i + j] != needle[j]) {
                    continue outer;
                }
            }
            return i;
        }
        throw new AssertionError("not found");
    }

    /**
     * A store that fails (the disk full at close) loses the bitmaps, as in QEMU, but not the
     * close: a warning names the node, and the image keeps them marked in use (inconsistent).
     */
    @Test
    void aStoreThatFailsIsReportedAndLeavesTheBitmapsInUse() throws Exception {
        Path p = dir.resolve("f.qcow2");
        TestImages.createQcow2(p, Qcow2Create.Options.of(4 << 20));
        byte[] image = Files.readAllBytes(p);
        dev.strata.testing.FaultyDisk disk = new dev.strata.testing.FaultyDisk(8 << 20);
        var logger = (ch.qos.logback.classic.Logger) org.slf4j.LoggerFactory.getLogger(BlockNode.class);
        var warnings = new ch.qos.logback.core.read.ListAppender<ch.qos.logback.classic.spi.ILoggingEvent>();
        warnings.start();
        logger.addAppender(warnings);
        try (BlockGraph g = Drivers.newGraph()) {
            g.register("faulty", (o, ctx) -> disk);
            BlockNode file = g.add(dev.strata.block.BlockOptions.empty()
                    .put("driver", "faulty")
                    .put("node-name", "f"));
            file.write(0, ByteBuffer.wrap(image));
            BlockNode q = g.add(dev.strata.block.BlockOptions.empty()
                    .put("driver", "qcow2")
                    .put("node-name", "q")
                    .put("file", "f"));
            q.bitmaps().add("b", 4 << 20, 65536, false, true);
            q.close();
            // stored once: the image lists b; now open it again (marked in use), fill the disk, close
            q = g.add(dev.strata.block.BlockOptions.empty()
                    .put("driver", "qcow2")
                    .put("node-name", "q2")
                    .put("file", "f"));
            assertThat(q.bitmaps().lookup("b").inconsistent()).isFalse();
            q.write(0, ByteBuffer.allocate(512));
            disk.failWrites(28);
            q.close();
            assertThat(warnings.list)
                    .singleElement()
                    .satisfies(
                            e -> assertThat(e.getFormattedMessage())
                                    .isEqualTo(
                                            "Lost persistent bitmaps during inactivation of node 'q2': No space left on device"));
            disk.failWrites(0);
            q = g.add(dev.strata.block.BlockOptions.empty()
                    .put("driver", "qcow2")
                    .put("node-name", "q3")
                    .put("read-only", true)
                    .put("file", "f"));
            assertThat(q.bitmaps().lookup("b").inconsistent())
                    .as("left in use by the failed store")
                    .isTrue();
        } finally {
            logger.detachAppender(warnings);
        }
    }

    // ---- helpers

    /** Dirty [offset, length] runs as QEMU reads the bitmap from the image. */
    private static List<List<Long>> dirtyRanges(Path image, String bitmap) throws Exception {
        List<List<Long>> out = new ArrayList<>();
        for (String line : Interop.qemuBitmapMap(image, bitmap).strip().split("\n")) {
            String[] f = line.strip().split("\\s+");
            if (f.length >= 4 && f[3].equals("dirty")) {
                out.add(List.of(Long.parseLong(f[0]), Long.parseLong(f[1])));
            }
        }
        return out;
    }

    private static List<List<Long>> ranges(DirtyBitmap b) {
        List<List<Long>> out = new ArrayList<>();
        for (long off = b.nextDirty(0); off >= 0; ) {
            long end = b.nextClean(off);
            out.add(List.of(off, end - off));
            off = end >= b.length() ? -1 : b.nextDirty(end);
        }
        return out;
    }

    /** The model: each write's range rounded out to the granularity, merged, clipped to the disk. */
    private static List<List<Long>> model(List<long[]> writes, long gran, long size) {
        TreeMap<Long, Long> chunks = new TreeMap<>();
        for (long[] w : writes) {
            for (long c = w[0] / gran; c <= (w[0] + w[1] - 1) / gran; c++) {
                chunks.put(c, c);
            }
        }
        List<List<Long>> out = new ArrayList<>();
        long start = -1;
        long prev = -2;
        for (long c : chunks.keySet()) {
            if (c != prev + 1) {
                if (start >= 0) {
                    out.add(List.of(start * gran, Math.min(size, (prev + 1) * gran) - start * gran));
                }
                start = c;
            }
            prev = c;
        }
        if (start >= 0) {
            out.add(List.of(start * gran, Math.min(size, (prev + 1) * gran) - start * gran));
        }
        return out;
    }
}
