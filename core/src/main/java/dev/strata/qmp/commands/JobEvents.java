package dev.strata.qmp.commands;

import dev.strata.job.Job;
import dev.strata.job.JobListener;
import dev.strata.job.JobStatus;
import dev.strata.qmp.schema.Qapi;
import java.util.function.BiConsumer;

/**
 * Turns what jobs report into QEMU's events with QEMU's members (in the order qemu-storage-daemon
 * 7.2 prints them): JOB_STATUS_CHANGE,
 * BLOCK_JOB_PENDING, BLOCK_JOB_COMPLETED / BLOCK_JOB_CANCELLED and BLOCK_JOB_ERROR.
 */
public final class JobEvents implements JobListener {
    /** JOB_STATUS_CHANGE's data. */
    public record JobStatusChange(JobStatus status, String id) {}

    /** BLOCK_JOB_PENDING's data. */
    public record BlockJobPending(String type, String id) {}

    /** BLOCK_JOB_COMPLETED's data ({@code error} only on failure). */
    public record BlockJobCompleted(
            String device,
            long len,
            long offset,
            long speed,
            String type,
            @Qapi.Optional String error) {}

    /** BLOCK_JOB_CANCELLED's data. */
    public record BlockJobCancelled(String device, long len, long offset, long speed, String type) {}

    /** BLOCK_JOB_ERROR's data. */
    public record BlockJobError(String device, String operation, String action) {}

    private volatile BiConsumer<String, Object> emit = (e, d) -> {};

    /** Connects the events to a QMP server's {@code emit} once it exists. */
    public void attach(BiConsumer<String, Object> emitter) {
        this.emit = emitter;
    }

    @Override
    public void statusChanged(Job job) {
        emit.accept("JOB_STATUS_CHANGE", new JobStatusChange(job.status(), job.id()));
    }

    @Override
    public void pending(Job job) {
        if (!job.blockJob()) {
            return;
        }
        emit.accept("BLOCK_JOB_PENDING", new BlockJobPending(job.type(), job.id()));
    }

    @Override
    public void finished(Job job) {
        if (!job.blockJob()) {
            return;
        }
        if (job.isCancelled()) {
            emit.accept(
                    "BLOCK_JOB_CANCELLED",
                    new BlockJobCancelled(
                            job.id(), job.progressTotal(), job.progressCurrent(), job.speed(), job.type()));
        } else {
            emit.accept(
                    "BLOCK_JOB_COMPLETED",
                    new BlockJobCompleted(
                            job.id(),
                            job.progressTotal(),
                            job.progressCurrent(),
                            job.speed(),
                            job.type(),
                            job.error()));
        }
    }

    @Override
    public void ioError(Job job, boolean read, ErrorAction action) {
        emit.accept(
                "BLOCK_JOB_ERROR",
                new BlockJobError(
                        job.id(), read ? "read" : "write", action.name().toLowerCase(java.util.Locale.ROOT)));
    }
}
