package dev.strata.backup;

/** QAPI BlockdevOnError: what a job does when a read (source) or write (target) fails. */
public enum OnError {
    /** The job fails with the error. */
    REPORT,
    /** The job retries the copy. */
    IGNORE,
    /** Stop on ENOSPC, report otherwise. */
    ENOSPC,
    /** The job pauses (as if the user paused it); resuming retries. */
    STOP,
    /** For jobs, the same as {@link #ENOSPC}. */
    AUTO
}
