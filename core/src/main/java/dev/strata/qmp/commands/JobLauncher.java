package dev.strata.qmp.commands;

import dev.strata.qmp.Command;
import dev.strata.qmp.QmpException;
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

    /** What a command does while launches are held: it may create and start jobs, or fail. */
    @FunctionalInterface
    interface Starting {
        void run() throws QmpException;
    }

    /**
     * Runs {@code starting} with launches held back: if it succeeds, the jobs it started launch once
     * the command's reply is queued; if it fails, at once (they end without waiting for a reply).
     */
    void startAfterReply(Command.Context ctx, Starting starting) throws QmpException {
        hold();
        boolean ok = false;
        try {
            starting.run();
            ok = true;
        } finally {
            Runnable launch = release();
            if (ok) {
                ctx.afterReply(launch);
            } else {
                launch.run();
            }
        }
    }

    /** Holds launches back until {@link #release}. */
    private synchronized void hold() {
        held = new ArrayList<>();
    }

    /** Ends the hold; the result launches what was held back. */
    private synchronized Runnable release() {
        List<Runnable> pending = held == null ? List.of() : held;
        held = null;
        return () -> pending.forEach(JobLauncher::start);
    }

    private static void start(Runnable r) {
        Thread.ofVirtual().name("strata-job").start(r);
    }
}
