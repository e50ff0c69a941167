package dev.strata.qmp.commands;

import dev.strata.block.BlockGraph;
import dev.strata.block.drivers.ImageCreator;
import dev.strata.job.Job;
import dev.strata.job.JobException;
import dev.strata.job.JobRegistry;
import dev.strata.job.JobTxn;
import dev.strata.qmp.Commands;
import dev.strata.qmp.QmpException;
import java.io.IOException;
import java.util.Map;

/**
 * blockdev-create: QEMU's job-based image creation. The command checks the options against
 * BlockdevCreateOptions and the driver, then starts a job of type {@code create}
 * (auto-finalized, never auto-dismissed, as in QEMU) that makes the image through the block
 * layer ({@link ImageCreator}); a failure concludes the job with the error, which query-jobs shows
 * until job-dismiss. The job announces itself with JOB_STATUS_CHANGE only: it is no block job.
 */
public final class CreateCommands {
    private CreateCommands() {}

    public static void register(Commands commands, BlockGraph graph, JobRegistry jobs, JobLauncher launcher) {
        BlockdevSchema schema = new BlockdevSchema(graph::hasDriver);
        commands.addBoxed("blockdev-create", schema.createArguments(), "{}", (a, ctx) -> {
            @SuppressWarnings("unchecked")
            Map<String, Object> options = (Map<String, Object>) a.get("options");
            if (!ImageCreator.supports((String) options.get("driver"))) {
                throw new QmpException("Driver does not support blockdev-create");
            }
            CreateJob job = new CreateJob(jobs, (String) a.get("job-id"), graph, options);
            // QEMU's job runs once the command has returned: its later events follow the reply
            launcher.startAfterReply(ctx, () -> {
                try {
                    jobs.add(job, new JobTxn());
                    jobs.start(job);
                } catch (JobException e) {
                    throw new QmpException(e.getMessage());
                }
            });
            return null;
        });
    }

    /** The job: one creation, progress 0 of 1 until it ends (1 of 1, whatever the outcome, as QEMU). */
    static final class CreateJob extends Job {
        private final BlockGraph graph;
        private final Map<String, Object> options;

        CreateJob(JobRegistry jobs, String id, BlockGraph graph, Map<String, Object> options) {
            super(jobs, id, "create", true, false);
            this.graph = graph;
            this.options = options;
        }

        @Override
        public boolean blockJob() {
            return false;
        }

        @Override
        protected void run() throws JobFailure {
            setTotal(1);
            try {
                ImageCreator.create(graph, options);
            } catch (IOException e) {
                throw new JobFailure(String.valueOf(e.getMessage()));
            } finally {
                addProgress(1);
            }
        }
    }
}
