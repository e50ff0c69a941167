package dev.strata.job;

/**
 * What jobs report to the outside (the QMP layer turns each call into QEMU's event). Calls are
 * made with the registry's lock held, in the order QEMU emits the events; an implementation must
 * not block and must not call back into the jobs.
 */
public interface JobListener {
    /** JOB_STATUS_CHANGE: {@code job} entered {@link Job#status()}. */
    void statusChanged(Job job);

    /** BLOCK_JOB_PENDING: reached pending with auto-finalize off. */
    void pending(Job job);

    /** BLOCK_JOB_COMPLETED, or BLOCK_JOB_CANCELLED when {@link Job#isCancelled()}. */
    void finished(Job job);

    /** BLOCK_JOB_ERROR: an I/O error met the job's error policy, which chose {@code action}. */
    void ioError(Job job, boolean read, ErrorAction action);

    /** QEMU's BlockErrorAction: what a job did about an I/O error. */
    enum ErrorAction {
        IGNORE,
        REPORT,
        STOP
    }

    /** A listener that reports nothing (tests of the state machine alone). */
    JobListener NONE = new JobListener() {
        @Override
        public void statusChanged(Job job) {}

        @Override
        public void pending(Job job) {}

        @Override
        public void finished(Job job) {}

        @Override
        public void ioError(Job job, boolean read, ErrorAction action) {}
    };
}
