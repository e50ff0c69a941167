package dev.strata.block;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.drivers.Drivers;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.random.RandomGenerator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** BlockNode's own duties: range checks, read-only refusal, and walking the backing chain for status. */
class BlockNodeTest {
    @TempDir
    Path dir;

    /** A layer that holds some 4 KiB blocks itself and leaves the rest to its backing child. */
    private static class LayerDriver implements BlockDriver {
        static final int BLOCK = 4096;
        final long size;
        final boolean[] allocated;
        final boolean[] zero;
        final BlockNode backing;

        LayerDriver(long size, BlockNode backing, RandomGenerator rnd) {
            this.size = size;
            this.backing = backing;
            int n = (int) (size / BLOCK);
            allocated = new boolean[n];
            zero = new boolean[n];
            for (int i = 0; i < n; i++) {
                allocated[i] = rnd.nextInt(3) == 0;
                zero[i] = allocated[i] && rnd.nextBoolean();
            }
        }

        @Override
        public String format() {
            return "layer";
        }

        @Override
        public long length() {
            return size;
        }

        @Override
        public void read(long offset, ByteBuffer dst) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void write(long offset, ByteBuffer src) {
            throw new UnsupportedOperationException();
        }

        @Override
        public void writeZeroes(long offset, long length, boolean mayUnmap) {}

        @Override
        public void discard(long offset, long length) {}

        @Override
        public void flush() {}

        @Override
        public List<Extent> blockStatus(long offset, long length) {
            // one block per call at most, to exercise callers that loop
            int b = (int) (offset / BLOCK);
            long end = Math.min(offset + length, (long) (b + 1) * BLOCK);
            Extent.Kind k = !allocated[b] ? Extent.Kind.UNALLOCATED : zero[b] ? Extent.Kind.ZERO : Extent.Kind.DATA;
            return List.of(Extent.of(offset, end - offset, k));
        }

        @Override
        public Map<String, BlockNode> children() {
            return backing == null ? Map.of() : Map.of("backing", backing);
        }

        @Override
        public boolean readOnly() {
            return true;
        }

        @Override
        public void close() {}
    }

    @Test
    void blockStatusFindsEachBlockInTheLayerThatHoldsIt() throws IOException {
        long seed = System.nanoTime();
        RandomGenerator rnd = java.util.random.RandomGeneratorFactory.<RandomGenerator>of("L64X128MixRandom")
                .create(seed);
        int depth = 4;
        long[] sizes = {64 * 4096, 48 * 4096, 64 * 4096, 32 * 4096};
        List<LayerDriver> layers = new ArrayList<>();
        BlockNode below = null;
        for (int i = depth - 1; i >= 0; i--) {
            LayerDriver d = new LayerDriver(sizes[i], below, rnd);
            layers.addFirst(d);
            below = new BlockNode("layer" + i, false, d, List.of());
        }
        BlockNode top = below;
        long size = sizes[0];
        List<Extent> status = top.blockStatus(0, size);

        long pos = 0;
        for (Extent e : status) {
            assertThat(e.offset()).as("seed %d: extents are contiguous", seed).isEqualTo(pos);
            for (long b = e.offset() / 4096; b < e.end() / 4096; b++) {
                int expectDepth = -1;
                Extent.Kind expectKind = Extent.Kind.UNALLOCATED;
                for (int i = 0; i < depth; i++) {
                    LayerDriver l = layers.get(i);
                    if (b * 4096 >= l.size) {
                        expectDepth = i;
                        break;
                    }
                    if (l.allocated[(int) b]) {
                        expectDepth = i;
                        expectKind = l.zero[(int) b] ? Extent.Kind.ZERO : Extent.Kind.DATA;
                        break;
                    }
                }
                if (expectKind == Extent.Kind.UNALLOCATED && expectDepth < 0) {
                    expectDepth = depth - 1;
                }
                assertThat(e.kind()).as("seed %d block %d", seed, b).isEqualTo(expectKind);
                if (expectKind != Extent.Kind.UNALLOCATED) {
                    assertThat(e.depth()).as("seed %d block %d", seed, b).isEqualTo(expectDepth);
                }
            }
            pos = e.end();
        }
        assertThat(pos).isEqualTo(size);
    }

    @Test
    void rawNodeChecksRangesAndReadOnly() throws IOException {
        Path img = dir.resolve("disk.raw");
        Files.write(img, new byte[8192]);
        try (BlockGraph graph = Drivers.newGraph()) {
            BlockNode ro = graph.openImage(img.toString(), "raw", OpenFlags.READ_ONLY);
            assertThatThrownBy(() -> ro.write(0, new byte[512], 0, 512))
                    .isInstanceOf(BlockException.class)
                    .hasMessageContaining("read only");
            assertThatThrownBy(() -> ro.read(8000, new byte[512], 0, 512))
                    .isInstanceOf(BlockException.class)
                    .hasMessageContaining("out of range");
            ro.close();

            BlockNode rw = graph.add(BlockOptions.parseKeyValue(
                    "driver=raw,node-name=disk0,file.driver=file,file.filename=" + img, null));
            byte[] data = new byte[1000];
            java.util.Arrays.fill(data, (byte) 0x5a);
            rw.write(100, data, 0, data.length);
            byte[] back = new byte[1000];
            rw.read(100, back, 0, back.length);
            assertThat(back).isEqualTo(data);
            assertThat(graph.find("disk0")).containsSame(rw);
            assertThat(rw.filename()).isEqualTo(img.toString());
        }
    }

    @Test
    void aRequestInFlightReachesItsDrainedChildSoTheParentsDrainEnds() throws Exception {
        // a transaction drains every node, children first: a guest write already in flight on the
        // qcow2 node must still reach the file child, or draining the qcow2 node waits forever
        Path image = dir.resolve("nested.qcow2");
        dev.strata.testing.TestImages.createQcow2(image, dev.strata.block.qcow2.Qcow2Create.Options.of(8 << 20));
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode node = graph.openImage(image.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            BlockNode file = node.file().orElseThrow();
            java.util.concurrent.CompletableFuture<Void> write = new java.util.concurrent.CompletableFuture<>();
            try (IoGate.Drained child = file.drain()) {
                Thread.ofVirtual().start(() -> {
                    try {
                        // allocating: a refcount block, the data and the L2 table go to the file
                        node.write(1 << 20, ByteBuffer.wrap(new byte[64 << 10]));
                        write.complete(null);
                    } catch (Throwable t) {
                        write.completeExceptionally(t);
                    }
                });
                // the write is in flight on the parent (or already done) before the parent drains
                long deadline = System.nanoTime() + 10_000_000_000L;
                while (!write.isDone() && node.inFlight() == 0 && System.nanoTime() < deadline) {
                    Thread.onSpinWait();
                }
                java.util.concurrent.CompletableFuture<Void> parentDrained =
                        java.util.concurrent.CompletableFuture.runAsync(
                                () -> node.drain().close());
                parentDrained.get(10, java.util.concurrent.TimeUnit.SECONDS);
                assertThat(write)
                        .as("the write ended before the parent's drain did")
                        .isDone();
            }
            write.get(10, java.util.concurrent.TimeUnit.SECONDS);
        }
    }

    @Test
    void unknownDriversAndOptionsAreRefused() throws IOException {
        Path img = dir.resolve("disk.raw");
        Files.write(img, new byte[4096]);
        try (BlockGraph graph = Drivers.newGraph()) {
            assertThatThrownBy(() -> graph.add(
                            BlockOptions.parseKeyValue("driver=vmdk2,file.driver=file,file.filename=" + img, null)))
                    .hasMessage("Parameter 'driver' does not accept value 'vmdk2'");
            assertThatThrownBy(() -> graph.add(BlockOptions.parseKeyValue(
                            "driver=raw,bogus=1,file.driver=file,file.filename=" + img, null)))
                    .hasMessageContaining("does not support the option 'bogus'");
            assertThatThrownBy(() -> graph.add(BlockOptions.parseKeyValue(
                            "driver=raw,node-name=1bad,file.driver=file,file.filename=" + img, null)))
                    .hasMessage("Invalid node-name: '1bad'");
            assertThatThrownBy(() -> graph.openImage(dir.resolve("missing").toString(), "raw", OpenFlags.READ_ONLY))
                    .hasMessageContaining("No such file or directory");
            assertThat(graph.nodes()).isEmpty();
        }
    }

    @Test
    void cacheNoFlushMakesFlushANoOpDownTheWholeNode() throws IOException {
        java.util.concurrent.atomic.AtomicInteger flushes = new java.util.concurrent.atomic.AtomicInteger();
        BlockGraph graph = new BlockGraph()
                .register(
                        "counting",
                        (options, context) -> new LayerDriver(4096, null, RandomGenerator.of("L64X128MixRandom")) {
                            @Override
                            public void flush() {
                                flushes.incrementAndGet();
                            }
                        });
        BlockNode plain = graph.add(BlockOptions.parseKeyValue("driver=counting,node-name=plain", null));
        BlockNode unsafe =
                graph.add(BlockOptions.parseKeyValue("driver=counting,node-name=unsafe,cache.no-flush=on", null));
        plain.flush();
        assertThat(flushes).hasValue(1);
        unsafe.flush();
        assertThat(flushes).as("cache.no-flush=on, qemu-img's -t unsafe").hasValue(1);
        graph.close();
    }
}
