package dev.strata.job;

/** A job command refused, with QEMU's words ("Job 'j' in state 'pending' cannot accept ..."). */
public final class JobException extends Exception {
    private static final long serialVersionUID = 1L;

    public JobException(String message) {
        super(message, null, false, false);
    }
}
