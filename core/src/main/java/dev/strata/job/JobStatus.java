package dev.strata.job;

import java.util.Locale;

/**
 * QEMU's job states (qapi JobStatus) with the transition table of QEMU's job.c, which every state
 * change is checked against.
 *
 * <pre>
 * from \ to   UND CRE RUN PAU RDY STB WAI PEN ABO CON NUL
 * undefined    .   x   .   .   .   .   .   .   .   .   .
 * created      .   .   x   .   .   .   .   .   x   .   x
 * running      .   .   .   x   x   .   x   .   x   .   .
 * paused       .   .   x   .   .   .   .   .   .   .   .
 * ready        .   .   .   .   .   x   x   .   x   .   .
 * standby      .   .   .   .   x   .   .   .   .   .   .
 * waiting      .   .   .   .   .   .   .   x   x   .   .
 * pending      .   .   .   .   .   .   .   .   x   x   .
 * aborting     .   .   .   .   .   .   .   .   x   x   .
 * concluded    .   .   .   .   .   .   .   .   .   .   x
 * null         .   .   .   .   .   .   .   .   .   .   .
 * </pre>
 */
public enum JobStatus {
    UNDEFINED,
    CREATED,
    RUNNING,
    PAUSED,
    READY,
    STANDBY,
    WAITING,
    PENDING,
    ABORTING,
    CONCLUDED,
    NULL;

    private static final String[] TABLE = {
        "01000000000", // undefined
        "00100000101", // created
        "00011010100", // running
        "00100000000", // paused
        "00000110100", // ready
        "00001000000", // standby
        "00000001100", // waiting
        "00000000110", // pending
        "00000000110", // aborting
        "00000000001", // concluded
        "00000000000", // null
    };

    /** Whether QEMU's table allows going from this state to {@code to}. */
    public boolean canBecome(JobStatus to) {
        return TABLE[ordinal()].charAt(to.ordinal()) == '1';
    }

    /** The QAPI name ("created", "null"). */
    public String qapiName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /**
     * QEMU's job_is_completed: the job's work is over (it may still await its transaction, its
     * finalisation or its dismissal).
     */
    public boolean isCompleted() {
        return switch (this) {
            case WAITING, PENDING, ABORTING, CONCLUDED, NULL -> true;
            default -> false;
        };
    }
}
