package dev.strata.block;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.drivers.Drivers;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.LongConsumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A node's bitmaps see every write before the caller does, and its I/O gate drains. */
class BlockNodeDirtyTrackingTest {
    private static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    /** An in-memory driver whose writes can be made to fail or to wait. */
    private static final class MemDriver implements BlockDriver {
        final byte[] data;
        volatile boolean fail;
        volatile LongConsumer onWrite = off -> {};

        MemDriver(int size) {
            data = new byte[size];
        }

        @Override
        public String format() {
            return "mem";
        }

        @Override
        public long length() {
            return data.length;
        }

        @Override
        public void read(long offset, ByteBuffer dst) {
            dst.put(data, (int) offset, dst.remaining());
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            onWrite.accept(offset);
            if (fail) {
                throw new BlockException("injected failure");
            }
            src.get(data, (int) offset, src.remaining());
        }

        @Override
        public void writeZeroes(long offset, long length, boolean mayUnmap) {
            java.util.Arrays.fill(data, (int) offset, (int) (offset + length), (byte) 0);
        }

        @Override
        public void discard(long offset, long length) {}

        @Override
        public void flush() {}

        @Override
        public List<Extent> blockStatus(long offset, long length) {
            return List.of(new Extent(offset, length, Extent.Kind.DATA, 0, -1, null));
        }

        @Override
        public boolean readOnly() {
            return false;
        }

        @Override
        public void close() {}
    }

    private static BlockNode memNode(MemDriver d) {
        return new BlockNode("mem0", false, d, List.of());
    }

    @Test
    void writesZeroesAndDiscardsThroughARawNodeMatchAChunkModel() throws Exception {
        Path img = dir.resolve("a.raw");
        long size = 16 * MiB;
        try (var f = new java.io.RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(size);
        }
        long seed = System.nanoTime();
        SplittableRandom rnd = new SplittableRandom(seed);
        try (BlockGraph graph = Drivers.newGraph()) {
            BlockNode node = graph.add(BlockOptions.parseKeyValue(
                    "driver=raw,node-name=drive0,discard=unmap,file.driver=file,file.filename=" + img, null));
            DirtyBitmap fine = node.bitmaps().add("fine", size, 4096, false);
            DirtyBitmap coarse = node.bitmaps().add("coarse", size, 65536, false);
            DirtyBitmap off = node.bitmaps().add("off", size, 65536, true);
            BitSet fineModel = new BitSet();
            BitSet coarseModel = new BitSet();
            byte[] buf = new byte[256 * 1024];
            for (int op = 0; op < 200; op++) {
                long len = 1 + rnd.nextInt(buf.length);
                long offset = rnd.nextLong(size - len);
                switch (rnd.nextInt(3)) {
                    case 0 -> node.write(offset, buf, 0, (int) len);
                    case 1 -> node.writeZeroes(offset, len, rnd.nextBoolean());
                    default -> node.discard(offset, len);
                }
                fineModel.set((int) (offset / 4096), (int) ((offset + len + 4095) / 4096));
                coarseModel.set((int) (offset / 65536), (int) ((offset + len + 65535) / 65536));
                assertThat(fine.count()).as("seed %d op %d", seed, op).isEqualTo(fineModel.cardinality() * 4096L);
                assertThat(coarse.count()).as("seed %d op %d", seed, op).isEqualTo(coarseModel.cardinality() * 65536L);
            }
            assertThat(off.count()).as("a disabled bitmap records nothing").isZero();
            node.read(0, buf, 0, 4096);
            assertThat(fine.count()).as("reads mark nothing").isEqualTo(fineModel.cardinality() * 4096L);
        }
    }

    @Test
    void withDiscardIgnoreADiscardChangesNothingAndMarksNothing() throws Exception {
        Path img = dir.resolve("c.raw");
        try (var f = new java.io.RandomAccessFile(img.toFile(), "rw")) {
            f.setLength(MiB);
        }
        try (BlockGraph graph = Drivers.newGraph()) {
            BlockNode ignoring = graph.add(
                    BlockOptions.parseKeyValue("driver=raw,node-name=d0,file.driver=file,file.filename=" + img, null));
            DirtyBitmap b = ignoring.bitmaps().add("b", MiB, 65536, false);
            ignoring.discard(0, 65536);
            assertThat(b.count()).as("QEMU's default discard=ignore").isZero();
            graph.remove("d0");
            BlockNode unmapping = graph.add(BlockOptions.parseKeyValue(
                    "driver=raw,node-name=d1,discard=unmap,file.driver=file,file.filename=" + img, null));
            DirtyBitmap c = unmapping.bitmaps().add("c", MiB, 65536, false);
            BlockNode file = unmapping.file().orElseThrow();
            DirtyBitmap onFile = file.bitmaps().add("f", MiB, 65536, false);
            unmapping.discard(0, 65536);
            assertThat(c.count()).isEqualTo(65536);
            assertThat(onFile.count())
                    .as("the inline file child inherits discard=unmap")
                    .isEqualTo(65536);
        }
    }

    @Test
    void theMarkIsMadeAfterTheDriverAndBeforeTheCallerHearsEvenOnFailure() throws Exception {
        MemDriver d = new MemDriver((int) MiB);
        BlockNode node = memNode(d);
        DirtyBitmap b = node.bitmaps().add("b", MiB, 65536, false);
        AtomicBoolean markedDuringDriverCall = new AtomicBoolean(true);
        d.onWrite = off -> markedDuringDriverCall.set(b.isDirty(off));
        node.write(65536, new byte[10], 0, 10);
        assertThat(markedDuringDriverCall)
                .as("not yet marked while the driver writes")
                .isFalse();
        assertThat(b.isDirty(65536)).as("marked when write() returns").isTrue();

        d.fail = true;
        assertThatThrownBy(() -> node.write(5 * 65536, new byte[10], 0, 10)).hasMessage("injected failure");
        assertThat(b.isDirty(5 * 65536))
                .as("a failed write may have changed data: marked")
                .isTrue();
    }

    @Test
    void drainWaitsForWritesInFlightAndHoldsNewOnesBack() throws Exception {
        MemDriver d = new MemDriver((int) MiB);
        BlockNode node = memNode(d);
        CountDownLatch inDriver = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        d.onWrite = off -> {
            if (off == 0) {
                inDriver.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        Thread slow = Thread.ofVirtual().start(() -> write(node, 0));
        assertThat(inDriver.await(10, TimeUnit.SECONDS)).isTrue();
        assertThat(node.inFlight()).isEqualTo(1);

        CountDownLatch drained = new CountDownLatch(1);
        CountDownLatch releaseDrain = new CountDownLatch(1);
        Thread drainer = Thread.ofVirtual().start(() -> {
            try (IoGate.Drained x = node.drain()) {
                drained.countDown();
                write(node, 4096); // the drainer's own I/O goes through
                releaseDrain.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        assertThat(drained.await(300, TimeUnit.MILLISECONDS))
                .as("drain must wait for the write in flight")
                .isFalse();
        release.countDown();
        slow.join();
        assertThat(drained.await(10, TimeUnit.SECONDS)).isTrue();

        CountDownLatch lateDone = new CountDownLatch(1);
        Thread late = Thread.ofVirtual().start(() -> {
            write(node, 8192);
            lateDone.countDown();
        });
        assertThat(lateDone.await(300, TimeUnit.MILLISECONDS))
                .as("a new write waits while the node is drained")
                .isFalse();
        releaseDrain.countDown();
        drainer.join();
        assertThat(lateDone.await(10, TimeUnit.SECONDS)).isTrue();
        late.join();
        assertThat(node.inFlight()).isZero();
    }

    @Test
    void closeWaitsForRequestsAndLaterOnesFail() throws Exception {
        MemDriver d = new MemDriver((int) MiB);
        BlockNode node = memNode(d);
        CountDownLatch inDriver = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        d.onWrite = off -> {
            inDriver.countDown();
            try {
                release.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        };
        Thread w = Thread.ofVirtual().start(() -> write(node, 0));
        assertThat(inDriver.await(10, TimeUnit.SECONDS)).isTrue();
        Thread closer = Thread.ofVirtual().start(() -> {
            try {
                node.close();
            } catch (IOException e) {
                throw new IllegalStateException(e);
            }
        });
        closer.join(300);
        assertThat(closer.isAlive()).as("close waits for the write in flight").isTrue();
        release.countDown();
        w.join();
        closer.join();
        assertThatThrownBy(() -> node.write(0, new byte[1], 0, 1)).hasMessage("Node 'mem0' is closed");
    }

    @Test
    void aNodeUsedAsAChildCannotBeRemoved() throws IOException {
        Path img = dir.resolve("b.raw");
        Files.write(img, new byte[65536]);
        try (BlockGraph graph = Drivers.newGraph()) {
            graph.add(BlockOptions.parseKeyValue("driver=file,node-name=f0,filename=" + img, null));
            graph.add(BlockOptions.parseKeyValue("driver=raw,node-name=d0,file=f0", null));
            assertThatThrownBy(() -> graph.remove("f0")).hasMessage("Block device f0 is in use");
            graph.remove("d0");
            graph.remove("f0");
            assertThatThrownBy(() -> graph.remove("f0")).hasMessage("Failed to find node with node-name='f0'");
        }
    }

    private static void write(BlockNode node, long offset) {
        try {
            node.write(offset, new byte[512], 0, 512);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }
}
