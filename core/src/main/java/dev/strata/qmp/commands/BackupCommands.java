package dev.strata.qmp.commands;

import dev.strata.backup.Backup;
import dev.strata.backup.BackupException;
import dev.strata.backup.BackupJob;
import dev.strata.backup.BackupRequest;
import dev.strata.backup.BitmapMode;
import dev.strata.backup.OnError;
import dev.strata.backup.SyncMode;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.qcow2.Qcow2Create;
import dev.strata.job.JobRegistry;
import dev.strata.job.JobTxn;
import dev.strata.qmp.Commands;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.schema.Qapi;
import dev.strata.txn.Action;
import dev.strata.txn.TransactionException;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * drive-backup and blockdev-backup: each is a transaction of one action, as in QEMU. The action's
 * prepare looks the nodes up, makes and opens drive-backup's target, and creates the job with the
 * source drained; its commit starts the job; its abort cancels it (the bitmap is merged back).
 *
 * <p>Strata defaults {@code job-id} to the {@code device} argument, so the seed document's commands
 * run verbatim (qemu-storage-daemon 7.2 refuses them with "Invalid job ID ''").
 */
public final class BackupCommands {
    private static final Logger LOG = LoggerFactory.getLogger(BackupCommands.class);

    private BackupCommands() {}

    /** QAPI MirrorSyncMode. */
    @Qapi.Name("MirrorSyncMode")
    public enum MirrorSyncMode {
        TOP,
        FULL,
        NONE,
        INCREMENTAL,
        BITMAP
    }

    /** QAPI BitmapSyncMode. */
    @Qapi.Name("BitmapSyncMode")
    public enum BitmapSyncMode {
        ON_SUCCESS,
        NEVER,
        ALWAYS
    }

    /** QAPI BlockdevOnError. */
    @Qapi.Name("BlockdevOnError")
    public enum BlockdevOnError {
        REPORT,
        IGNORE,
        ENOSPC,
        STOP,
        AUTO
    }

    /** QAPI NewImageMode. */
    @Qapi.Name("NewImageMode")
    public enum NewImageMode {
        EXISTING,
        ABSOLUTE_PATHS
    }

    /** QAPI DriveBackup. */
    public record DriveBackup(
            @Qapi.Optional String jobId,
            String device,
            MirrorSyncMode sync,
            @Qapi.Default("0") long speed,
            @Qapi.Optional String bitmap,
            @Qapi.Optional BitmapSyncMode bitmapMode,
            @Qapi.Default("false") boolean compress,
            @Qapi.Default("\"report\"") BlockdevOnError onSourceError,
            @Qapi.Default("\"report\"") BlockdevOnError onTargetError,
            @Qapi.Default("true") boolean autoFinalize,
            @Qapi.Default("true") boolean autoDismiss,
            @Qapi.Optional String filterNodeName,
            @Qapi.Optional @Qapi.Any Object xPerf,
            String target,
            @Qapi.Optional String format,
            @Qapi.Default("\"absolute-paths\"") NewImageMode mode) {}

    /** QAPI BlockdevBackup. */
    public record BlockdevBackup(
            @Qapi.Optional String jobId,
            String device,
            MirrorSyncMode sync,
            @Qapi.Default("0") long speed,
            @Qapi.Optional String bitmap,
            @Qapi.Optional BitmapSyncMode bitmapMode,
            @Qapi.Default("false") boolean compress,
            @Qapi.Default("\"report\"") BlockdevOnError onSourceError,
            @Qapi.Default("\"report\"") BlockdevOnError onTargetError,
            @Qapi.Default("true") boolean autoFinalize,
            @Qapi.Default("true") boolean autoDismiss,
            @Qapi.Optional String filterNodeName,
            @Qapi.Optional @Qapi.Any Object xPerf,
            String target) {}

    static void register(Commands commands, Nodes nodes, JobRegistry jobs, JobLauncher launcher) {
        commands.add("drive-backup", DriveBackup.class, "{}", (a, ctx) -> {
            TransactionCommands.runOne(nodes, launcher, ctx, driveBackup(nodes, jobs, new JobTxn(), a));
            return null;
        });
        commands.add("blockdev-backup", BlockdevBackup.class, "{}", (a, ctx) -> {
            TransactionCommands.runOne(nodes, launcher, ctx, blockdevBackup(nodes, jobs, new JobTxn(), a));
            return null;
        });
    }

    /**
     * The action of a backup: prepare creates the job, commit starts it (paused by the drain, as in
     * QEMU), abort cancels it, clean lets it run once the drain is over.
     */
    private static Action backupAction(JobRegistry jobs, Action.Step<BackupJob> create) {
        return new Action() {
            private BackupJob job;
            private boolean started;

            @Override
            public void prepare() throws TransactionException {
                job = create.run();
            }

            @Override
            public void commit() {
                jobs.startDrained(job);
                started = true;
            }

            @Override
            public void abort() {
                jobs.cancelSync(job);
            }

            @Override
            public void clean() {
                if (started) {
                    jobs.drainEnded(job);
                }
            }
        };
    }

    static Action blockdevBackup(Nodes nodes, JobRegistry jobs, JobTxn txn, BlockdevBackup a) {
        return backupAction(jobs, () -> {
            BlockNode source = lookup(nodes, a.device());
            BlockNode target = lookup(nodes, a.target());
            return create(
                    jobs,
                    txn,
                    new BackupRequest(
                            a.jobId() != null ? a.jobId() : a.device(),
                            source,
                            target,
                            SyncMode.valueOf(a.sync().name()),
                            a.bitmap(),
                            a.bitmapMode() == null
                                    ? null
                                    : BitmapMode.valueOf(a.bitmapMode().name()),
                            a.speed(),
                            a.compress(),
                            OnError.valueOf(a.onSourceError().name()),
                            OnError.valueOf(a.onTargetError().name()),
                            a.autoFinalize(),
                            a.autoDismiss(),
                            null));
        });
    }

    static Action driveBackup(Nodes nodes, JobRegistry jobs, JobTxn txn, DriveBackup a) {
        return backupAction(jobs, () -> {
            BlockNode source = lookup(nodes, a.device());
            blocked(source);
            MirrorSyncMode sync = a.sync();
            BlockNode backing = null;
            if (sync == MirrorSyncMode.TOP) {
                backing = source.backing().orElse(null);
                if (backing == null) {
                    sync = MirrorSyncMode.FULL;
                }
            }
            boolean existing = a.mode() == NewImageMode.EXISTING;
            String format = a.format() != null ? a.format() : existing ? null : source.driverName();
            long size;
            try {
                size = source.length();
            } catch (IOException e) {
                throw new TransactionException("bdrv_getlength failed");
            }
            if (!existing) {
                BlockNode base = sync == MirrorSyncMode.NONE ? source : backing;
                createImage(a.target(), format, size, base);
            }
            BlockNode target = openTarget(nodes, a.target(), format, sync == MirrorSyncMode.NONE ? source : null);
            Runnable close = () -> closeTarget(nodes, target);
            try {
                return create(
                        jobs,
                        txn,
                        new BackupRequest(
                                a.jobId() != null ? a.jobId() : a.device(),
                                source,
                                target,
                                SyncMode.valueOf(sync.name()),
                                a.bitmap(),
                                a.bitmapMode() == null
                                        ? null
                                        : BitmapMode.valueOf(a.bitmapMode().name()),
                                a.speed(),
                                a.compress(),
                                OnError.valueOf(a.onSourceError().name()),
                                OnError.valueOf(a.onTargetError().name()),
                                a.autoFinalize(),
                                a.autoDismiss(),
                                close));
            } catch (TransactionException | RuntimeException e) {
                close.run();
                throw e;
            }
        });
    }

    private static BackupJob create(JobRegistry jobs, JobTxn txn, BackupRequest r) throws TransactionException {
        try {
            return Backup.create(jobs, txn, r);
        } catch (BackupException e) {
            throw new TransactionException(e.getMessage());
        }
    }

    private static BlockNode lookup(Nodes nodes, String name) throws TransactionException {
        try {
            return nodes.lookupDeviceOrNode(name);
        } catch (QmpException e) {
            throw new TransactionException(e.desc());
        }
    }

    private static void blocked(BlockNode n) throws TransactionException {
        if (n.blocker().isPresent()) {
            throw new TransactionException(
                    "Node '" + n.nodeName() + "' is busy: " + n.blocker().get());
        }
    }

    /** mode=absolute-paths: a new image of the source's size (qcow2 names {@code base} as backing). */
    private static void createImage(String filename, String format, long size, BlockNode base)
            throws TransactionException {
        try {
            switch (format) {
                case "qcow2" -> {
                    Qcow2Create.Options o = Qcow2Create.Options.of(size);
                    if (base != null) {
                        o = o.withBacking(base.filename(), base.driverName());
                    }
                    Qcow2Create.create(Path.of(filename), o);
                }
                case "raw", "file" -> {
                    try (RandomAccessFile f = new RandomAccessFile(filename, "rw")) {
                        f.setLength(0);
                        f.setLength(size);
                    }
                }
                default ->
                    throw new TransactionException("Format driver '" + format + "' does not support image creation");
            }
        } catch (IOException e) {
            throw new TransactionException("Could not create '" + filename + "': " + String.valueOf(e.getMessage()));
        }
    }

    /** Opens the target as QEMU does: discard=unmap, the format given or probed, as a graph node. */
    private static BlockNode openTarget(Nodes nodes, String filename, String format, BlockNode backingNode)
            throws TransactionException {
        try {
            String fmt = format != null ? format : nodes.graph().probe(filename);
            BlockOptions o = BlockOptions.empty()
                    .put("driver", fmt)
                    .put("discard", "unmap")
                    .put("file", BlockOptions.empty().put("driver", "file").put("filename", filename));
            if (backingNode != null && fmt.equals("qcow2")) {
                o.put("backing", backingNode.nodeName());
            }
            return nodes.graph().add(o);
        } catch (IOException e) {
            throw new TransactionException(String.valueOf(e.getMessage()));
        }
    }

    private static void closeTarget(Nodes nodes, BlockNode target) {
        try {
            nodes.graph().remove(target.nodeName());
        } catch (IOException e) {
            LOG.warn("closing backup target '{}' failed: {}", target.nodeName(), e.getMessage());
        }
    }

    /** The action kinds that may run in a grouped transaction. */
    static final List<String> JOB_ACTIONS = List.of("drive-backup", "blockdev-backup");
}
