package dev.strata.job;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executor;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The jobs of a daemon by id, and the commands that act on them with QEMU's checks (job.c): the
 * verb table, user pause and resume, cancel, finalize, dismiss, and the transaction rules that
 * decide when a finished job commits or aborts.
 *
 * <p>Concurrency: one lock for all jobs (QEMU's job_mutex), so the members of a transaction are
 * finalised together without lock ordering questions. Listener calls happen under it, keeping
 * events in QEMU's order. A job's thread is launched through {@code launcher}, which the QMP layer
 * holds back until the reply of the command that started the job has been sent (QEMU's job
 * coroutine runs only once the command returns to the main loop).
 */
public final class JobRegistry {
    final ReentrantLock lock = new ReentrantLock();
    /** Signalled when a job's thread ends its work. */
    final Condition changed = lock.newCondition();

    final JobListener listener;
    final Executor launcher;
    // guarded by lock; newest first, as QEMU lists jobs
    private final List<Job> jobs = new ArrayList<>();

    public JobRegistry(JobListener listener, Executor launcher) {
        this.listener = listener;
        this.launcher = launcher;
    }

    /** A registry whose jobs start their threads at once. */
    public JobRegistry(JobListener listener) {
        this(listener, r -> Thread.ofVirtual().name("strata-job").start(r));
    }

    /** Every job not yet dismissed, newest first. */
    public List<Job> jobs() {
        lock.lock();
        try {
            return List.copyOf(jobs);
        } finally {
            lock.unlock();
        }
    }

    public Job find(String id) {
        lock.lock();
        try {
            for (Job j : jobs) {
                if (j.id().equals(id)) {
                    return j;
                }
            }
            return null;
        } finally {
            lock.unlock();
        }
    }

    /** QEMU's checks of a job id, in its order. */
    public void checkId(String id) throws JobException {
        if (!wellFormed(id)) {
            throw new JobException("Invalid job ID '" + id + "'");
        }
        if (find(id) != null) {
            throw new JobException("Job ID '" + id + "' already in use");
        }
    }

    /** QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
    public static boolean wellFormed(String id) {
        if (id.isEmpty() || !isAsciiLetter(id.charAt(0))) {
            return false;
        }
        for (int i = 1; i < id.length(); i++) {
            char c = id.charAt(i);
            if (!(isAsciiLetter(c) || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_')) {
                return false;
            }
        }
        return true;
    }

    private static boolean isAsciiLetter(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }

    /** Registers a new job (state created) in {@code txn}, after checking its id. */
    public void add(Job job, JobTxn txn) throws JobException {
        lock.lock();
        try {
            checkId(job.id());
            jobs.addFirst(job);
            job.created(txn);
        } finally {
            lock.unlock();
        }
    }

    /** job_early_fail: a job that could not be set up goes from created straight to null. */
    public void earlyFail(Job job) {
        lock.lock();
        try {
            job.txn.jobs.remove(job);
            job.dismissLocked();
        } finally {
            lock.unlock();
        }
    }

    /** job_start: running now; the work begins on the job's own thread. */
    public void start(Job job) {
        lock.lock();
        try {
            job.startLocked(false);
        } finally {
            lock.unlock();
        }
    }

    /**
     * job_start inside a drained section (a transaction's commit): the job pauses at once and runs
     * when {@link #drainEnded} is called, as QEMU's job does.
     */
    public void startDrained(Job job) {
        lock.lock();
        try {
            job.startLocked(true);
        } finally {
            lock.unlock();
        }
    }

    public void drainEnded(Job job) {
        lock.lock();
        try {
            job.drainEnded();
        } finally {
            lock.unlock();
        }
    }

    /**
     * job_user_cancel (always with force, as backup jobs are): checks the verb, then cancels; a
     * concluded job is dismissed, one not started is finalised at once.
     */
    public void cancel(Job job) throws JobException {
        lock.lock();
        try {
            job.checkVerb(JobVerb.CANCEL);
            cancelLocked(job);
        } finally {
            lock.unlock();
        }
    }

    private void cancelLocked(Job job) {
        if (job.status() == JobStatus.CONCLUDED) {
            job.dismissLocked();
            return;
        }
        job.cancelAsync();
        if (!job.started()) {
            job.completedLocked();
        } else if (job.deferred()) {
            txnAbort(job);
        }
    }

    /**
     * job_cancel_sync: cancels and waits until the job is concluded (a transaction's abort, daemon
     * shutdown).
     */
    public void cancelSync(Job job) {
        lock.lock();
        try {
            JobStatus s = job.status();
            if (s == JobStatus.NULL) {
                return;
            }
            if (s != JobStatus.CONCLUDED) {
                cancelLocked(job);
            }
            while (job.status() != JobStatus.CONCLUDED && job.status() != JobStatus.NULL) {
                changed.awaitUninterruptibly();
            }
        } finally {
            lock.unlock();
        }
    }

    public void pause(Job job) throws JobException {
        lock.lock();
        try {
            job.userPause();
        } finally {
            lock.unlock();
        }
    }

    public void resume(Job job) throws JobException {
        lock.lock();
        try {
            job.userResume();
        } finally {
            lock.unlock();
        }
    }

    public void setSpeed(Job job, long speed) throws JobException {
        lock.lock();
        try {
            job.setSpeedLocked(speed);
        } finally {
            lock.unlock();
        }
    }

    /** job-finalize: finalises the job's whole transaction. */
    public void finalize(Job job) throws JobException {
        lock.lock();
        try {
            job.checkVerb(JobVerb.FINALIZE);
            doFinalize(job);
        } finally {
            lock.unlock();
        }
    }

    public void dismiss(Job job) throws JobException {
        lock.lock();
        try {
            job.checkVerb(JobVerb.DISMISS);
            job.dismissLocked();
        } finally {
            lock.unlock();
        }
    }

    // ---- transaction rules (job.c), under lock

    void remove(Job job) {
        jobs.remove(job);
        changed.signalAll();
    }

    /** job_completed_txn_success: wait for the others; when all are done, pending then finalise. */
    void txnSuccess(Job job) {
        job.transition(JobStatus.WAITING);
        JobTxn txn = job.txn;
        for (Job other : txn.jobs) {
            if (!other.status().isCompleted()) {
                return;
            }
        }
        for (Job other : txn.snapshot()) {
            other.toPending();
        }
        for (Job other : txn.jobs) {
            if (!other.autoFinalize()) {
                return;
            }
        }
        doFinalize(job);
    }

    private void doFinalize(Job job) {
        for (Job other : job.txn.snapshot()) {
            other.finalizeSingle();
        }
        changed.signalAll();
    }

    /**
     * job_completed_txn_abort: every other member is cancelled with force and waited for, then
     * each is finalised (aborted) in transaction order.
     */
    void txnAbort(Job job) {
        JobTxn txn = job.txn;
        if (txn.aborting) {
            return;
        }
        txn.aborting = true;
        for (Job other : txn.snapshot()) {
            if (other != job) {
                other.cancelAsync();
            }
        }
        while (!txn.jobs.isEmpty()) {
            Job other = txn.jobs.getFirst();
            if (!other.status().isCompleted()) {
                other.awaitDeferred();
            }
            other.finalizeSingle();
        }
        changed.signalAll();
    }
}
