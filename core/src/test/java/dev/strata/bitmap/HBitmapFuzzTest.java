package dev.strata.bitmap;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;

/**
 * Fuzzes HBitmap against the sparse run model: the fuzzer picks a size (word and level boundaries
 * up to 2^40 bits) and a sequence of set / reset / merge / queries; every answer must be the
 * model's (regression mode in CI; {@code JAZZER_FUZZ=1} to search for new inputs).
 */
class HBitmapFuzzTest {
    private static final long[] SIZES = {
        1, 63, 64, 65, 4095, 4096, 4097, 262143, 262144, 262145, (1L << 24) + 1, (1L << 34) + 3, 1L << 40
    };

    @FuzzTest(maxDuration = "20s")
    void behavesLikeTheModel(FuzzedDataProvider data) {
        long size = SIZES[data.consumeInt(0, SIZES.length - 1)];
        HBitmap bitmap = new HBitmap(size);
        HBitmap other = new HBitmap(size);
        SparseBits model = new SparseBits(size);
        SparseBits otherModel = new SparseBits(size);
        int ops = data.consumeInt(0, 64);
        for (int op = 0; op < ops && data.remainingBytes() > 0; op++) {
            long start = data.consumeLong(0, size - 1);
            long n = data.consumeLong(0, Math.min(size - start, 1 << 16));
            switch (data.consumeInt(0, 6)) {
                case 0 -> {
                    bitmap.set(start, n);
                    model.set(start, n);
                }
                case 1 -> {
                    long r = data.consumeBoolean() ? size - start : n;
                    bitmap.reset(start, r);
                    model.reset(start, r);
                }
                case 2 -> {
                    other.set(start, n);
                    otherModel.set(start, n);
                }
                case 3 -> {
                    bitmap.merge(other);
                    for (long[] run : otherModel.runs()) {
                        model.set(run[0], run[1] - run[0]);
                    }
                }
                case 4 -> {
                    assertThat(bitmap.nextSet(start)).isEqualTo(model.nextSet(start));
                    assertThat(bitmap.nextClear(start)).isEqualTo(model.nextClear(start));
                }
                case 5 -> assertThat(bitmap.count(start, n)).isEqualTo(model.count(start, n));
                default -> assertThat(bitmap.get(start)).isEqualTo(model.get(start));
            }
            assertThat(bitmap.count()).isEqualTo(model.count());
        }
        assertThat(SparseBits.walk(bitmap)).containsExactlyElementsOf(model.runs());
    }
}
