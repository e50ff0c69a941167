package dev.strata.backup;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.IoGate;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.job.JobListener;
import dev.strata.job.JobRegistry;
import dev.strata.job.JobStatus;
import dev.strata.job.JobTxn;
import dev.strata.testing.FaultyDisk;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Invariant 3 against a plain model: while guest threads write at random (unaligned, across
 * cluster boundaries, some zero-writes and discards), a backup still ends up byte for byte equal
 * to the disk at the instant it was created; and the bitmap's successor then holds every write
 * made meanwhile. Seeded; the seed is in the test's name.
 */
class BackupPointInTimeTest {
    private static final int SIZE = 8 << 20;

    private static BlockNode node(BlockGraph graph, String name, FaultyDisk disk) throws Exception {
        graph.register("faulty-" + name, (o, ctx) -> disk);
        return graph.add(BlockOptions.empty().put("driver", "faulty-" + name).put("node-name", name));
    }

    private static byte[] contents(FaultyDisk d) throws Exception {
        ByteBuffer b = ByteBuffer.allocate(SIZE);
        d.read(0, b);
        return b.array();
    }

    @ParameterizedTest(name = "seed {0}")
    @ValueSource(longs = {1, 2, 3, 4, 5, 6})
    void aFullBackupIsTheDiskAsItWasWhenTheJobStarted(long seed) throws Exception {
        run(seed, false);
    }

    /**
     * Incremental: the target holds an older state of the disk (the previous backup) and the
     * bitmap what changed since; copying the dirty clusters must give the disk at the start.
     */
    @ParameterizedTest(name = "seed {0}")
    @ValueSource(longs = {11, 12, 13, 14, 15, 16})
    void anIncrementalBackupIsTheDiskAsItWasWhenTheJobStarted(long seed) throws Exception {
        run(seed, true);
    }

    private static void run(long seed, boolean incremental) throws Exception {
        SplittableRandom r = new SplittableRandom(seed);
        FaultyDisk src = new FaultyDisk(SIZE);
        byte[] init = new byte[SIZE];
        r.nextBytes(init);
        src.write(0, ByteBuffer.wrap(init));
        FaultyDisk dst = new FaultyDisk(SIZE);
        try (BlockGraph graph = new BlockGraph()) {
            BlockNode source = node(graph, "src", src);
            BlockNode target = node(graph, "dst", dst);
            DirtyBitmap bitmap = source.bitmaps().add("b", SIZE, 65536, false);
            if (incremental) {
                // the previous backup, then changes the bitmap records
                dst.write(0, ByteBuffer.wrap(init));
                byte[] w = new byte[100_000];
                for (int i = 0; i < 40; i++) {
                    int off = r.nextInt(SIZE - w.length);
                    int len = 1 + r.nextInt(w.length);
                    r.nextBytes(w);
                    source.write(off, ByteBuffer.wrap(w, 0, len));
                }
            }
            JobRegistry jobs = new JobRegistry(JobListener.NONE);
            BackupJob job;
            byte[] t0;
            try (IoGate.Drained d = source.drain()) {
                job = Backup.create(
                        jobs,
                        new JobTxn(),
                        new BackupRequest(
                                "j",
                                source,
                                target,
                                SyncMode.FULL,
                                "b",
                                BitmapMode.ON_SUCCESS,
                                48L << 20,
                                false,
                                OnError.REPORT,
                                OnError.REPORT,
                                true,
                                true,
                                false,
                                null));
                t0 = contents(src);
            }
            jobs.start(job);
            AtomicBoolean stop = new AtomicBoolean();
            List<long[]> written = java.util.Collections.synchronizedList(new ArrayList<>());
            List<Thread> guests = new ArrayList<>();
            for (int g = 0; g < 3; g++) {
                long guestSeed = r.nextLong();
                guests.add(Thread.ofVirtual().start(() -> {
                    SplittableRandom gr = new SplittableRandom(guestSeed);
                    byte[] buf = new byte[200_000];
                    while (!stop.get()) {
                        int off = gr.nextInt(SIZE - 1);
                        int len = 1 + gr.nextInt(Math.min(buf.length, SIZE - off));
                        try {
                            switch (gr.nextInt(6)) {
                                case 0 -> source.writeZeroes(off, len, true);
                                default -> {
                                    gr.nextBytes(buf);
                                    source.write(off, ByteBuffer.wrap(buf, 0, len));
                                }
                            }
                            written.add(new long[] {off, len});
                        } catch (java.io.IOException e) {
                            throw new AssertionError(e);
                        }
                    }
                }));
            }
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (jobs.find("j") != null && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            stop.set(true);
            for (Thread t : guests) {
                t.join();
            }
            assertThat(job.status()).isEqualTo(JobStatus.NULL);
            assertThat(job.error()).isNull();
            assertThat(contents(dst)).as("seed %d", seed).isEqualTo(t0);
            assertThat(bitmap.successor()).isNull();
            assertThat(written).isNotEmpty();
            DirtyBitmap after = source.bitmaps().lookup("b");
            for (long[] w : written) {
                assertThat(after.isDirty(w[0])).isTrue();
                assertThat(after.isDirty(w[0] + w[1] - 1)).isTrue();
            }
        }
    }
}
