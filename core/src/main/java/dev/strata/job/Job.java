package dev.strata.job;

import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * One long-running operation with QEMU's job life cycle (job.c): created, running (pausable),
 * then waiting for its transaction, pending, finalised (commit or abort, then clean), concluded,
 * dismissed. Subclasses give the work ({@link #run}) and the finalisation steps.
 *
 * <p>Contract of the steps: {@link #run} does the work on the job's own virtual thread and calls
 * {@link #pausePoint()} between pieces; it returns normally on success (also when cancelled: it
 * then stops early) and throws {@link JobFailure} on failure. Exactly one of {@link #commit()} or
 * {@link #abort()} runs, then {@link #clean()} always runs, all under the registry's lock.
 *
 * <p>Concurrency: all state below is guarded by the registry's single lock (QEMU's job_mutex), so
 * a transaction's members change state together; {@code wake} is signalled whenever a pause,
 * resume, cancel or speed change may concern the job's thread. Progress counters are volatile,
 * written by the job's thread and read by queries.
 */
public abstract class Job {
    /** Why {@link #run} failed: the errno-style text QEMU reports ("Input/output error"). */
    public static final class JobFailure extends Exception {
        private static final long serialVersionUID = 1L;

        public JobFailure(String message) {
            super(message, null, false, false);
        }
    }

    // set at creation, never changed
    private final String id;
    private final String type;
    private final boolean autoFinalize;
    private final boolean autoDismiss;
    final JobRegistry registry;
    final ReentrantLock lock;
    private final Condition wake;

    // guarded by lock
    JobTxn txn;
    private JobStatus status = JobStatus.UNDEFINED;
    /** Starts at one so the job does not run before {@link #start}, as in QEMU. */
    private int pauseCount = 1;

    private boolean userPaused;
    private boolean drainPaused;
    private boolean paused;
    private boolean started;
    private boolean deferred;
    private boolean cancelled;
    private boolean busy;
    private String error;
    private String ioStatus = "ok";
    private long speed;

    // written by the job's thread and by copy-before-write; never under lock
    private final java.util.concurrent.atomic.AtomicLong progressCurrent = new java.util.concurrent.atomic.AtomicLong();
    private volatile long progressTotal;

    protected Job(JobRegistry registry, String id, String type, boolean autoFinalize, boolean autoDismiss) {
        this.registry = registry;
        this.lock = registry.lock;
        this.wake = lock.newCondition();
        this.id = id;
        this.type = type;
        this.autoFinalize = autoFinalize;
        this.autoDismiss = autoDismiss;
    }

    /** The work; see the class comment for its contract. */
    protected abstract void run() throws JobFailure;

    /** Success of the whole transaction: make the result permanent. */
    protected void commit() {}

    /** Failure or cancel of the transaction: undo what can be undone. */
    protected void abort() {}

    /** Always last: release what the job held. */
    protected void clean() {}

    /**
     * Whether this is a block job (QEMU's BlockJob): listed by query-block-jobs, reached by the
     * block-job-* commands and announced with BLOCK_JOB_* events. A job that works on no node
     * (blockdev-create's) is a plain job: JOB_STATUS_CHANGE only.
     */
    public boolean blockJob() {
        return true;
    }

    public final String id() {
        return id;
    }

    /** QAPI JobType ("backup"). */
    public final String type() {
        return type;
    }

    public final boolean autoFinalize() {
        return autoFinalize;
    }

    public final boolean autoDismiss() {
        return autoDismiss;
    }

    public final JobStatus status() {
        lock.lock();
        try {
            return status;
        } finally {
            lock.unlock();
        }
    }

    /** BlockJobInfo's "paused": a pause was requested (by the user or by an error policy). */
    public final boolean paused() {
        lock.lock();
        try {
            return pauseCount > 0;
        } finally {
            lock.unlock();
        }
    }

    public final boolean userPaused() {
        lock.lock();
        try {
            return userPaused;
        } finally {
            lock.unlock();
        }
    }

    /** Whether the job's thread is working now (not sleeping, paused or done). */
    public final boolean busy() {
        lock.lock();
        try {
            return busy;
        } finally {
            lock.unlock();
        }
    }

    /** QEMU's job_is_cancelled (backup jobs are always cancelled with force). */
    public final boolean isCancelled() {
        lock.lock();
        try {
            return cancelled;
        } finally {
            lock.unlock();
        }
    }

    /** The failure text once the job failed or was cancelled ("Operation canceled"), else null. */
    public final String error() {
        lock.lock();
        try {
            return error;
        } finally {
            lock.unlock();
        }
    }

    /** BlockDeviceIoStatus: "ok", "failed" or "nospace". */
    public final String ioStatus() {
        lock.lock();
        try {
            return ioStatus;
        } finally {
            lock.unlock();
        }
    }

    public final long speed() {
        lock.lock();
        try {
            return speed;
        } finally {
            lock.unlock();
        }
    }

    public final long progressCurrent() {
        return progressCurrent.get();
    }

    public final long progressTotal() {
        return progressTotal;
    }

    /** Adds work done; takes no lock, so copy-before-write may call it from a guest's write. */
    protected final void addProgress(long done) {
        progressCurrent.addAndGet(done);
    }

    /** Sets the amount of work the job expects (QEMU's progress "len"). */
    public final void setTotal(long total) {
        progressTotal = total;
    }

    // ---- the job's thread

    /**
     * Stops here while a pause is requested and the job is not cancelled (state paused, back to
     * running on resume). Returns whether the job has been cancelled, so the work can stop.
     */
    protected final boolean pausePoint() {
        lock.lock();
        try {
            if (pauseCount > 0 && !cancelled) {
                JobStatus was = status;
                transition(was == JobStatus.READY ? JobStatus.STANDBY : JobStatus.PAUSED);
                paused = true;
                busy = false;
                while (pauseCount > 0 && !cancelled) {
                    wake.awaitUninterruptibly();
                }
                paused = false;
                busy = true;
                transition(was);
            }
            return cancelled;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Whether the job's thread should come to its next {@link #pausePoint}: a pause is requested
     * or the job is cancelled. For helpers working for the job on other threads.
     */
    protected final boolean stopRequested() {
        lock.lock();
        try {
            return pauseCount > 0 || cancelled;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Sleeps up to {@code nanos} (rate limiting), waking early on cancel, pause or speed change;
     * returns whether the job has been cancelled.
     */
    protected final boolean sleep(long nanos) {
        lock.lock();
        try {
            long left = nanos;
            long speedBefore = speed;
            busy = false;
            while (left > 0 && !cancelled && pauseCount == 0 && speed == speedBefore) {
                try {
                    left = wake.awaitNanos(left);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
            busy = true;
            return cancelled;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Applies an error policy to an I/O error ({@code stop}: the job pauses as if the user paused
     * it and reports io-status; {@code ignore}: carry on) and reports BLOCK_JOB_ERROR.
     */
    protected final void ioError(boolean read, JobListener.ErrorAction action, boolean noSpace) {
        lock.lock();
        try {
            if (action == JobListener.ErrorAction.STOP) {
                if (!userPaused) {
                    pauseCount++;
                    userPaused = true;
                }
                ioStatus = noSpace ? "nospace" : "failed";
            }
            registry.listener.ioError(this, read, action);
        } finally {
            lock.unlock();
        }
    }

    /** The speed in bytes per second the work should keep to; 0 means unlimited. */
    protected final long currentSpeed() {
        return speed();
    }

    // ---- life cycle, all under lock

    void transition(JobStatus to) {
        if (!status.canBecome(to)) {
            throw new IllegalStateException(
                    "job '" + id + "': no transition " + status.qapiName() + " -> " + to.qapiName());
        }
        JobStatus from = status;
        status = to;
        if (from != to) {
            registry.listener.statusChanged(this);
        }
    }

    void checkVerb(JobVerb verb) throws JobException {
        if (!verb.allowedIn(status)) {
            throw new JobException("Job '" + id + "' in state '" + status.qapiName() + "' cannot accept command verb '"
                    + verb.qapiName() + "'");
        }
    }

    void created(JobTxn t) {
        txn = t;
        // QEMU inserts at the head: a transaction finalises its newest job first
        t.jobs.addFirst(this);
        transition(JobStatus.CREATED);
    }

    /**
     * job_start: the job becomes running; its thread is launched by the registry's launcher. Started
     * inside a drained section (a transaction), it pauses at once until the drain ends, as QEMU's
     * job does at its first pause point (so clients see running, paused, running).
     */
    void startLocked(boolean drained) {
        started = true;
        pauseCount--;
        busy = true;
        paused = false;
        transition(JobStatus.RUNNING);
        if (drained) {
            drainPaused = true;
            pauseCount++;
            transition(JobStatus.PAUSED);
        }
        registry.launcher.execute(this::body);
    }

    /** The drain the job started in has ended: running again (unless the user paused it). */
    void drainEnded() {
        if (drainPaused) {
            drainPaused = false;
            pauseCount--;
            transition(JobStatus.RUNNING);
            wake.signalAll();
        }
    }

    private void body() {
        String failure = null;
        try {
            if (!pausePoint()) {
                run();
            }
        } catch (JobFailure f) {
            failure = f.getMessage();
        } catch (RuntimeException e) {
            failure = e.toString();
        }
        lock.lock();
        try {
            busy = false;
            deferred = true;
            if (failure != null) {
                error = failure;
            }
            completedLocked();
            registry.changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** job_update_rc: a cancelled job fails with ECANCELED; a failed one goes aborting. */
    private boolean updateRc() {
        if (error == null && cancelled) {
            error = "Operation canceled";
        }
        if (error != null) {
            transition(JobStatus.ABORTING);
            return false;
        }
        return true;
    }

    /** job_completed: the work ended; the transaction decides what follows. */
    void completedLocked() {
        if (updateRc()) {
            registry.txnSuccess(this);
        } else {
            registry.txnAbort(this);
        }
    }

    boolean deferred() {
        return deferred;
    }

    boolean started() {
        return started;
    }

    boolean failed() {
        return error != null;
    }

    /** job_finalize_single: commit or abort, clean, report, conclude. */
    void finalizeSingle() {
        boolean ok = updateRc();
        try {
            if (ok) {
                commit();
            } else {
                abort();
            }
        } finally {
            clean();
        }
        if (started) {
            registry.listener.finished(this);
        }
        txn.jobs.remove(this);
        transition(JobStatus.CONCLUDED);
        if (autoDismiss || !started) {
            dismissLocked();
        }
    }

    void dismissLocked() {
        transition(JobStatus.NULL);
        registry.remove(this);
    }

    void toPending() {
        transition(JobStatus.PENDING);
        if (!autoFinalize) {
            registry.listener.pending(this);
        }
    }

    /** job_cancel_async with force (backup ignores soft cancel): resume a user pause, flag it. */
    void cancelAsync() {
        if (userPaused) {
            userPaused = false;
            pauseCount--;
        }
        cancelled = true;
        wake.signalAll();
    }

    void userPause() throws JobException {
        checkVerb(JobVerb.PAUSE);
        if (userPaused) {
            throw new JobException("Job is already paused");
        }
        userPaused = true;
        pauseCount++;
        wake.signalAll();
    }

    void userResume() throws JobException {
        if (!userPaused) {
            throw new JobException("Can't resume a job that was not paused");
        }
        checkVerb(JobVerb.RESUME);
        ioStatus = "ok";
        userPaused = false;
        pauseCount--;
        wake.signalAll();
    }

    void setSpeedLocked(long newSpeed) throws JobException {
        checkVerb(JobVerb.SET_SPEED);
        if (newSpeed < 0) {
            throw new JobException("Parameter 'speed' expects a non-negative value");
        }
        speed = newSpeed;
        wake.signalAll();
    }

    /** Waits (releasing the lock) until the job's thread has ended its work. */
    void awaitDeferred() {
        while (started && !deferred) {
            registry.changed.awaitUninterruptibly();
        }
    }

    @Override
    public String toString() {
        return "Job[" + id + ", " + type + ", " + status.qapiName() + "]";
    }
}
