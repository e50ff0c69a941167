package dev.strata.job;

import java.util.ArrayList;
import java.util.List;

/**
 * Jobs that complete or fail together (QEMU's JobTxn): no member leaves {@code waiting} until all
 * are done, and one failure cancels the others. A job started alone gets a transaction of its own.
 *
 * <p>Guarded by the registry's lock.
 */
public final class JobTxn {
    final List<Job> jobs = new ArrayList<>();
    boolean aborting;

    /** A new, empty transaction; jobs join it when created. */
    public JobTxn() {}

    List<Job> snapshot() {
        return List.copyOf(jobs);
    }
}
