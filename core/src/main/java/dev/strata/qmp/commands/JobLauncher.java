package dev.strata.qmp.commands;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executor;

/**
 * Starts the threads of jobs, holding them back while a command that starts jobs runs, until its
 * reply has been queued: QEMU's job coroutines run only once the command returns to the main loop,
 * so a client always sees {@code {"return": {}}} before a job's later events (waiting, pending,
 * BLOCK_JOB_COMPLETED), however fast the job is.
 */
public final class JobLauncher implements Executor {
    // guarded by this
    private List<Runnable> held;

    @Override
    public synchronized void execute(Runnable r) {
        if (held != null) {
            held.add(r);
        } else {
            start(r);
        }
    }

    /** Holds launches back until {@link #release}. */
    synchronized void hold() {
        held = new ArrayList<>();
    }

    /** Ends the hold; the result launches what was held back. */
    synchronized Runnable release() {
        List<Runnable> pending = held == null ? List.of() : held;
        held = null;
        return () -> pending.forEach(JobLauncher::start);
    }

    private static void start(Runnable r) {
        Thread.ofVirtual().name("strata-job").start(r);
    }
}
