package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The computed refcount table against a plain map: every width from 1 to 64 bits, values up to the
 * width's maximum, indices on refcount block boundaries, growth, and the memory budget.
 */
class Qcow2CheckRefcountsTest {
    @ParameterizedTest(name = "refcount order {0}")
    @ValueSource(ints = {0, 1, 2, 3, 4, 5, 6})
    void behavesLikeAMap(int order) throws Exception {
        long seed = 1000 + order;
        Random rnd = new Random(seed);
        int clusterBits = 9;
        Qcow2CheckRefcounts t = new Qcow2CheckRefcounts(clusterBits, order, 1L << 30);
        long perBlock = t.entriesPerBlock();
        assertThat(perBlock).as("entries per block").isEqualTo((512L * 8) >> order);
        long max = t.max();
        Map<Long, Long> model = new HashMap<>();
        long size = 0;
        for (int step = 0; step < 20_000; step++) {
            if (rnd.nextInt(100) == 0 || size == 0) {
                size += 1 + rnd.nextInt((int) perBlock * 3);
                t.ensureSize(size);
            }
            long index = switch (rnd.nextInt(4)) {
                // block boundaries and their neighbours
                case 0 -> Math.min(size - 1, (rnd.nextLong(size) / perBlock) * perBlock);
                case 1 -> Math.min(size - 1, (rnd.nextLong(size) / perBlock) * perBlock + perBlock - 1);
                default -> rnd.nextLong(size);
            };
            long value = switch (rnd.nextInt(4)) {
                case 0 -> 0;
                case 1 -> max;
                default -> order == 6 ? rnd.nextLong() : rnd.nextLong(max + 1);
            };
            t.set(index, value);
            model.put(index, value);
            long probe = rnd.nextLong(size);
            assertThat(t.get(probe))
                    .as("seed %d step %d index %d", seed, step, probe)
                    .isEqualTo(model.getOrDefault(probe, 0L));
        }
        assertThat(t.size()).isEqualTo(size);
        for (Map.Entry<Long, Long> e : model.entrySet()) {
            assertThat(t.get(e.getKey()))
                    .as("seed %d index %d", seed, e.getKey())
                    .isEqualTo(e.getValue());
            // the block bytes are the on-disk refcount block: decoding them gives the same value
            byte[] block = t.block(e.getKey() / perBlock);
            assertThat(Qcow2CheckRefcounts.decode(block, (int) (e.getKey() % perBlock), order))
                    .isEqualTo(e.getValue());
        }
        t.clear();
        for (long i : model.keySet()) {
            assertThat(t.get(i)).isZero();
        }
    }

    @ParameterizedTest(name = "refcount order {0}")
    @ValueSource(ints = {0, 4, 6})
    void memoryBudgetIsEnforced(int order) throws Exception {
        // 64 KiB clusters: each touched refcount block costs a cluster
        Qcow2CheckRefcounts t = new Qcow2CheckRefcounts(16, order, 3L << 16);
        long perBlock = t.entriesPerBlock();
        t.ensureSize(perBlock * 10);
        t.set(0, 1);
        t.set(perBlock, 1);
        assertThatThrownBy(() -> t.set(perBlock * 2, 1)).isInstanceOf(Qcow2CheckRefcounts.BudgetExceeded.class);
        // zero never allocates
        t.set(perBlock * 5, 0);
        assertThat(t.blockIsEmpty(5)).isTrue();
        Qcow2CheckRefcounts huge = new Qcow2CheckRefcounts(9, order, 1L << 20);
        assertThatThrownBy(() -> huge.ensureSize(1L << 40)).isInstanceOf(Qcow2CheckRefcounts.BudgetExceeded.class);
    }
}
