package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** How the allocator uses host space: table growth, reuse of freed clusters, other refcount widths, concurrency. */
class Qcow2AllocationTest {
    @TempDir
    Path dir;

    private static Qcow2Header header(Path p) throws Exception {
        try (FileChannel ch = FileChannel.open(p)) {
            return Qcow2Header.parse(ch);
        }
    }

    @Test
    void refcountTableGrowsAndStaysConsistent() throws Exception {
        Interop.require("qemu-img");
        Path p = dir.resolve("grow.qcow2");
        TestImages.createQcow2(p, Qcow2Create.Options.of(32L << 20).withClusterSize(512));
        int before = header(p).refcountTableClusters();
        byte[] data = new byte[1 << 20];
        new Random(1).nextBytes(data);
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(p.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            for (int i = 0; i < 32; i++) {
                n.write((long) i << 20, ByteBuffer.wrap(data));
            }
        }
        // a 512-byte refcount table covers 8 MiB of host clusters; 32 MiB of data needs more
        assertThat(header(p).refcountTableClusters()).isGreaterThan(before);
        Images.assertCheckClean(p, "after growth");
        byte[] model = new byte[32 << 20];
        for (int i = 0; i < 32; i++) {
            System.arraycopy(data, 0, model, i << 20, data.length);
        }
        Images.assertSameAs(p, model, dir, "after growth");
    }

    @Test
    void discardedClustersAreReused() throws Exception {
        Interop.require("qemu-img");
        Path p = dir.resolve("reuse.qcow2");
        TestImages.createQcow2(p, Qcow2Create.Options.of(64L << 20));
        byte[] data = new byte[4 << 20];
        new Random(2).nextBytes(data);
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(p.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            n.write(0, ByteBuffer.wrap(data));
            long sizeAfterFirst = Files.size(p);
            n.discard(0, 4 << 20);
            n.write(32L << 20, ByteBuffer.wrap(data));
            // the second write lands in the discarded clusters (plus one new L2 table at most)
            assertThat(Files.size(p)).isLessThanOrEqualTo(sizeAfterFirst + 65536);
        }
        Images.assertCheckClean(p, "after reuse");
    }

    @ParameterizedTest(name = "refcount_bits={0}")
    @ValueSource(ints = {1, 2, 4, 8, 32, 64})
    void writesIntoImagesWithOtherRefcountWidths(int bits) throws Exception {
        Interop.require("qemu-img");
        Path p = dir.resolve("w" + bits + ".qcow2");
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-o",
                        "cluster_size=512,refcount_bits=" + bits,
                        p.toString(),
                        "16M")
                .assertOk();
        Random rnd = new Random(bits);
        byte[] model = new byte[16 << 20];
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(p.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            for (int i = 0; i < 200; i++) {
                int off = rnd.nextInt(model.length - 70000);
                int len = 1 + rnd.nextInt(70000);
                byte[] d = new byte[len];
                rnd.nextBytes(d);
                if (i % 5 == 4) {
                    n.discard(off, len);
                    long start = (off + 511) / 512 * 512;
                    long end = (off + len) / 512 * 512;
                    if (start < end) {
                        java.util.Arrays.fill(model, (int) start, (int) end, (byte) 0);
                    }
                } else {
                    n.write(off, ByteBuffer.wrap(d));
                    System.arraycopy(d, 0, model, off, len);
                }
            }
        }
        Images.assertCheckClean(p, "refcount bits " + bits);
        Images.assertSameAs(p, model, dir, "refcount bits " + bits);
    }

    @Test
    void concurrentWritersNeverLoseEachOthersBytes() throws Exception {
        Interop.require("qemu-img");
        Path p = dir.resolve("conc.qcow2");
        int cs = 4096;
        TestImages.createQcow2(p, Qcow2Create.Options.of(8L << 20).withClusterSize(cs));
        int threads = 8;
        int slice = cs / threads;
        byte[] model = new byte[8 << 20];
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(p.toString(), "qcow2", OpenFlags.READ_WRITE);
                ExecutorService pool = Executors.newFixedThreadPool(threads)) {
            List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int me = t;
                futures.add(pool.submit(() -> {
                    // thread t owns bytes [t*slice, (t+1)*slice) of every cluster, so every
                    // allocation races with the other threads' writes to the same cluster
                    Random rnd = new Random(me);
                    byte[] d = new byte[slice];
                    for (int i = 0; i < 3000; i++) {
                        int cluster = rnd.nextInt(model.length / cs);
                        long off = (long) cluster * cs + (long) me * slice;
                        rnd.nextBytes(d);
                        if (rnd.nextInt(10) == 0) {
                            n.writeZeroes(off, slice, rnd.nextBoolean());
                            java.util.Arrays.fill(d, (byte) 0);
                        } else {
                            n.write(off, ByteBuffer.wrap(d));
                        }
                        synchronized (model) {
                            System.arraycopy(d, 0, model, (int) off, slice);
                        }
                        byte[] back = new byte[slice];
                        n.read(off, ByteBuffer.wrap(back));
                        if (!java.util.Arrays.equals(back, d)) {
                            throw new AssertionError("thread " + me + " lost its write at " + off);
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                f.get();
            }
            assertThat(Images.readAll(n)).isEqualTo(model);
        }
        Images.assertCheckClean(p, "after concurrent writers");
    }
}
