package dev.strata.qmp.commands;

import dev.strata.block.BlockGraph;
import dev.strata.job.Job;
import dev.strata.job.JobException;
import dev.strata.job.JobRegistry;
import dev.strata.job.JobStatus;
import dev.strata.qmp.Commands;
import dev.strata.qmp.ErrorClass;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.schema.Qapi;
import java.util.ArrayList;
import java.util.List;

/**
 * The job commands: query-jobs, query-block-jobs, job-* by id and the older block-job-* by
 * "device" (the job id), with QEMU's lookups (GenericError "Job not found" for job-*,
 * DeviceNotActive "Block job '%s' not found" for block-job-*) and the rules of {@link JobRegistry}.
 */
public final class JobCommands {
    private JobCommands() {}

    /** QAPI BlockJobInfo, members in the order qemu-storage-daemon 7.2 prints them. */
    public record BlockJobInfo(
            boolean autoFinalize,
            String ioStatus,
            String device,
            boolean autoDismiss,
            boolean busy,
            long len,
            long offset,
            JobStatus status,
            boolean paused,
            long speed,
            boolean ready,
            String type,
            @Qapi.Optional String error) {}

    /** QAPI JobInfo, members in the order qemu-storage-daemon 7.2 prints them. */
    public record JobInfo(
            long currentProgress,
            JobStatus status,
            long totalProgress,
            String type,
            String id,
            @Qapi.Optional String error) {}

    /** Arguments naming a job by id. */
    public record JobId(String id) {}

    /** Arguments naming a block job by its "device" (its id). */
    public record JobDevice(String device) {}

    /** Arguments of block-job-cancel. */
    public record BlockJobCancel(
            String device, @Qapi.Default("false") boolean force) {}

    /** Arguments of block-job-set-speed. */
    public record BlockJobSetSpeed(String device, long speed) {}

    /** A job operation that may refuse. */
    @FunctionalInterface
    private interface Op {
        void run(Job job) throws JobException;
    }

    /** Registers the job commands, drive-backup, blockdev-backup and transaction. */
    public static void register(Commands commands, BlockGraph graph, JobRegistry jobs, JobLauncher launcher) {
        Nodes nodes = new Nodes(graph);
        registerJobCommands(commands, jobs);
        BackupCommands.register(commands, nodes, jobs, launcher);
        TransactionCommands.register(commands, nodes, jobs, launcher);
    }

    private static void registerJobCommands(Commands commands, JobRegistry jobs) {
        commands.add(
                "query-jobs",
                "[JobInfo]",
                () -> jobs.jobs().stream().map(JobCommands::jobInfo).toList());
        commands.add("query-block-jobs", "[BlockJobInfo]", () -> {
            List<BlockJobInfo> out = new ArrayList<>();
            for (Job j : jobs.jobs()) {
                if (j.blockJob()) {
                    out.add(blockJobInfo(j));
                }
            }
            return out;
        });
        commands.add("block-job-set-speed", BlockJobSetSpeed.class, "{}", (a, ctx) -> {
            run(blockJob(jobs, a.device()), j -> jobs.setSpeed(j, a.speed()));
            return null;
        });
        commands.add("block-job-cancel", BlockJobCancel.class, "{}", (a, ctx) -> {
            Job job = blockJob(jobs, a.device());
            if (job.userPaused() && !a.force()) {
                throw new QmpException("The block job for device '" + a.device() + "' is currently paused");
            }
            run(job, jobs::cancel);
            return null;
        });
        commands.add("block-job-pause", JobDevice.class, "{}", (a, ctx) -> {
            run(blockJob(jobs, a.device()), jobs::pause);
            return null;
        });
        commands.add("block-job-resume", JobDevice.class, "{}", (a, ctx) -> {
            run(blockJob(jobs, a.device()), jobs::resume);
            return null;
        });
        commands.add("block-job-complete", JobDevice.class, "{}", (a, ctx) -> {
            run(blockJob(jobs, a.device()), JobCommands::complete);
            return null;
        });
        commands.add("block-job-finalize", JobId.class, "{}", (a, ctx) -> {
            run(blockJob(jobs, a.id()), jobs::finalize);
            return null;
        });
        commands.add("block-job-dismiss", JobId.class, "{}", (a, ctx) -> {
            run(blockJob(jobs, a.id()), jobs::dismiss);
            return null;
        });
        commands.add("job-pause", JobId.class, "{}", (a, ctx) -> {
            run(job(jobs, a.id()), jobs::pause);
            return null;
        });
        commands.add("job-resume", JobId.class, "{}", (a, ctx) -> {
            run(job(jobs, a.id()), jobs::resume);
            return null;
        });
        commands.add("job-cancel", JobId.class, "{}", (a, ctx) -> {
            run(job(jobs, a.id()), jobs::cancel);
            return null;
        });
        commands.add("job-complete", JobId.class, "{}", (a, ctx) -> {
            run(job(jobs, a.id()), JobCommands::complete);
            return null;
        });
        commands.add("job-finalize", JobId.class, "{}", (a, ctx) -> {
            run(job(jobs, a.id()), jobs::finalize);
            return null;
        });
        commands.add("job-dismiss", JobId.class, "{}", (a, ctx) -> {
            run(job(jobs, a.id()), jobs::dismiss);
            return null;
        });
    }

    /** Backup jobs cannot be completed: the verb table refuses outside ready, and they never get there. */
    private static void complete(Job job) throws JobException {
        if (job.status() != JobStatus.READY && job.status() != JobStatus.STANDBY) {
            throw new JobException("Job '" + job.id() + "' in state '"
                    + job.status().qapiName() + "' cannot accept command verb 'complete'");
        }
        throw new JobException("The active block job '" + job.id() + "' cannot be completed");
    }

    private static void run(Job job, Op op) throws QmpException {
        try {
            op.run(job);
        } catch (JobException e) {
            throw new QmpException(e.getMessage());
        }
    }

    private static Job job(JobRegistry jobs, String id) throws QmpException {
        Job j = jobs.find(id);
        if (j == null) {
            throw new QmpException("Job not found");
        }
        return j;
    }

    private static Job blockJob(JobRegistry jobs, String id) throws QmpException {
        Job j = jobs.find(id);
        if (j == null || !j.blockJob()) {
            throw new QmpException(ErrorClass.DeviceNotActive, "Block job '" + id + "' not found");
        }
        return j;
    }

    static JobInfo jobInfo(Job j) {
        return new JobInfo(j.progressCurrent(), j.status(), j.progressTotal(), j.type(), j.id(), j.error());
    }

    static BlockJobInfo blockJobInfo(Job j) {
        return new BlockJobInfo(
                j.autoFinalize(),
                j.ioStatus(),
                j.id(),
                j.autoDismiss(),
                j.busy(),
                j.progressTotal(),
                j.progressCurrent(),
                j.status(),
                j.paused(),
                j.speed(),
                false,
                j.type(),
                j.error());
    }
}
