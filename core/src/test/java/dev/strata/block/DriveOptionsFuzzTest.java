package dev.strata.block;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.strata.block.drivers.Drivers;
import java.io.IOException;

/**
 * Fuzzes QEMU's {@code -drive} options as {@code --drive} and HMP {@code drive_add} read them:
 * any option list either gives a drive id QEMU would accept and root options naming a driver, or
 * is refused with an error that says why; nothing else escapes (regression mode in CI; {@code JAZZER_FUZZ=1} to search for new inputs).
 */
class DriveOptionsFuzzTest {
    private static final BlockGraph GRAPH = Drivers.newGraph();

    @FuzzTest(maxDuration = "20s")
    void parseNeverFailsUnexpectedly(FuzzedDataProvider data) {
        // a format is always given, so no file is opened to probe one: opening the path an
        // operator names is the point of the option, which the probing unit tests cover
        String text = "format=raw," + data.consumeRemainingAsString();
        DriveOptions.Parsed parsed;
        try {
            parsed = DriveOptions.parse(text, GRAPH);
        } catch (IOException refused) {
            assertThat(refused.getMessage()).isNotBlank();
            return;
        }
        try {
            DriveOptions.checkId(parsed.id());
        } catch (BlockException e) {
            throw new AssertionError("accepted an id QEMU refuses: " + parsed.id(), e);
        }
        assertThat(parsed.root().has("driver")).isTrue();
    }
}
