package dev.strata;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;

/**
 * The launcher's AOT-cache training run works end to end: should a command it uses change, the
 * run fails here instead of the launcher quietly going without a cache.
 */
class AotTrainCommandTest {
    @Test
    void theTrainingRunCompletesEveryStepItTakes() {
        StringWriter err = new StringWriter();
        int rc = Main.run(new PrintWriter(new StringWriter()), new PrintWriter(err), "aot-train");
        assertThat(rc).as(err.toString()).isZero();
    }
}
