package dev.strata.job;

import java.util.Locale;

/**
 * QEMU's job verbs (qapi JobVerb) with the verb table of QEMU's job.c: which states accept which
 * command. A refused verb reads "Job 'ID' in state 'STATE' cannot accept command verb 'VERB'".
 *
 * <pre>
 * verb \ state UND CRE RUN PAU RDY STB WAI PEN ABO CON NUL
 * cancel        .   x   x   x   x   x   x   x   .   .   .
 * pause         .   x   x   x   x   x   .   .   .   .   .
 * resume        .   x   x   x   x   x   .   .   .   .   .
 * set-speed     .   x   x   x   x   x   .   .   .   .   .
 * complete      .   .   .   .   x   x   .   .   .   .   .
 * finalize      .   .   .   .   .   .   .   x   .   .   .
 * dismiss       .   .   .   .   .   .   .   .   .   x   .
 * change        .   x   x   x   x   x   .   .   .   .   .
 * </pre>
 */
public enum JobVerb {
    CANCEL("01111111000"),
    PAUSE("01111100000"),
    RESUME("01111100000"),
    SET_SPEED("01111100000"),
    COMPLETE("00001100000"),
    FINALIZE("00000001000"),
    DISMISS("00000000010"),
    CHANGE("01111100000");

    private final String allowed;

    JobVerb(String allowed) {
        this.allowed = allowed;
    }

    /** Whether a job in {@code state} accepts this verb. */
    public boolean allowedIn(JobStatus state) {
        return allowed.charAt(state.ordinal()) == '1';
    }

    /** The QAPI name ("set-speed"). */
    public String qapiName() {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }
}
