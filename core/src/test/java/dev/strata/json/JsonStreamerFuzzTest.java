package dev.strata.json;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.util.ArrayList;
import java.util.List;

/**
 * Fuzzes the QMP input path with arbitrary bytes: the streamer only ever hands out values or
 * errors (no exception escapes, nothing grows without bound), and every value it hands out writes
 * as ASCII JSON that reads back and writes again to the same text (a double with an integral value
 * comes back as an integer, as QEMU prints it with %.17g: "3.0" is written "3"). Regression mode in
 * CI; {@code JAZZER_FUZZ=1} to search for new inputs.
 */
class JsonStreamerFuzzTest {
    @FuzzTest(maxDuration = "20s")
    void anyBytesGiveValuesOrErrors(FuzzedDataProvider data) {
        byte[] input = data.consumeRemainingAsBytes();
        List<Object> values = new ArrayList<>();
        List<String> errors = new ArrayList<>();
        JsonStreamer s = new JsonStreamer(new JsonStreamer.Sink() {
            @Override
            public void value(Object json) {
                values.add(json);
            }

            @Override
            public void error(String message) {
                errors.add(message);
            }
        });
        // in two pieces, as a socket may deliver it
        int cut = input.length / 2;
        s.feed(input, 0, cut);
        s.feed(input, cut, input.length - cut);
        for (String e : errors) {
            assertThat(e).startsWith("JSON ");
        }
        for (Object v : values) {
            String text = JsonWriter.write(v);
            assertThat(text.chars().allMatch(c -> c < 0x80))
                    .as("QMP output is ASCII")
                    .isTrue();
            if (!containsNonFinite(v)) {
                assertThat(JsonWriter.write(Json.parse(text))).isEqualTo(text);
            }
        }
    }

    private static boolean containsNonFinite(Object v) {
        return switch (v) {
            case Double d -> !Double.isFinite(d) || d == 0 && 1 / d < 0;
            case java.util.Map<?, ?> m -> m.values().stream().anyMatch(JsonStreamerFuzzTest::containsNonFinite);
            case List<?> l -> l.stream().anyMatch(JsonStreamerFuzzTest::containsNonFinite);
            case null, default -> false;
        };
    }
}
