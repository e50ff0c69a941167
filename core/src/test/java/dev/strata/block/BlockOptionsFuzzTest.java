package dev.strata.block;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;

/**
 * Fuzzes the {@code --blockdev} key=value parser: any string either parses into a tree whose
 * values can be read back, or is refused with an {@link IllegalArgumentException}; nothing else
 * escapes (regression mode in CI; {@code JAZZER_FUZZ=1} to search for new inputs).
 */
class BlockOptionsFuzzTest {
    @FuzzTest(maxDuration = "20s")
    void parseNeverFailsUnexpectedly(FuzzedDataProvider data) {
        String text = data.consumeRemainingAsString();
        BlockOptions options;
        try {
            options = BlockOptions.parseKeyValue(text, text.length() % 2 == 0 ? "driver" : null);
        } catch (IllegalArgumentException refused) {
            assertThat(refused.getMessage()).isNotBlank();
            return;
        }
        walk(options, 0);
    }

    private static void walk(BlockOptions options, int depth) {
        assertThat(depth).isLessThan(10_000);
        for (var e : options.asMap().entrySet()) {
            assertThat(e.getKey()).isNotEmpty();
            if (e.getValue() instanceof BlockOptions nested) {
                walk(nested, depth + 1);
            } else {
                assertThat(options.string(e.getKey())).isPresent();
            }
        }
    }
}
