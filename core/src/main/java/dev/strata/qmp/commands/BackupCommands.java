package dev.strata.qmp.commands;

import dev.strata.backup.Backup;
import dev.strata.backup.BackupException;
import dev.strata.backup.BackupJob;
import dev.strata.backup.BackupRequest;
import dev.strata.backup.BitmapMode;
import dev.strata.backup.CopyBeforeWriteFilter;
import dev.strata.backup.OnError;
import dev.strata.backup.SyncMode;
import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.qcow2.Qcow2Create;
import dev.strata.block.raw.RawDriver;
import dev.strata.job.JobRegistry;
import dev.strata.job.JobTxn;
import dev.strata.qmp.Commands;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.schema.Qapi;
import dev.strata.txn.Action;
import dev.strata.txn.TransactionException;
import java.io.IOException;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * drive-backup and blockdev-backup: each is a transaction of one action, as in QEMU. The action's
 * prepare looks the nodes up, makes and opens drive-backup's target, and creates the job with the
 * source drained; its commit starts the job; its abort cancels it (the bitmap is merged back).
 *
 * <p>Strata defaults {@code job-id} to the drive's id, as QEMU does, and to the {@code device}
 * argument for a node without a drive, so the seed document's commands run verbatim
 * (qemu-storage-daemon 7.2 refuses them with "Invalid job ID ''"). Every backup has a filter
 * node in the graph while it runs, named by {@code filter-node-name} or automatically.
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

    /** QAPI BackupCommon: the members drive-backup and blockdev-backup share. */
    public interface BackupCommon {
        String jobId();

        String device();

        MirrorSyncMode sync();

        long speed();

        String bitmap();

        BitmapSyncMode bitmapMode();

        boolean compress();

        BlockdevOnError onSourceError();

        BlockdevOnError onTargetError();

        boolean autoFinalize();

        boolean autoDismiss();

        boolean discardSource();

        String filterNodeName();
    }

    /**
     * QAPI BackupPerf (x-perf): accepted and checked as QEMU declares it; Strata's copy sizes its
     * work itself, so the values have no effect.
     */
    @Qapi.Name("BackupPerf")
    public record BackupPerf(
            @Qapi.Optional Boolean useCopyRange,
            @Qapi.Optional Long maxWorkers,
            @Qapi.Optional Long maxChunk) {}

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
            @Qapi.Optional BackupPerf xPerf,
            @Qapi.Default("false") boolean discardSource,
            String target,
            @Qapi.Optional String format,
            @Qapi.Default("\"absolute-paths\"") NewImageMode mode)
            implements BackupCommon {}

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
            @Qapi.Optional BackupPerf xPerf,
            @Qapi.Default("false") boolean discardSource,
            String target)
            implements BackupCommon {}

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
            BlockNode source = lookupSource(nodes, a.device());
            BlockNode target = lookup(nodes, a.target());
            checkFilterName(nodes, a.filterNodeName());
            FilterSlot filter = new FilterSlot(nodes);
            return withFilter(
                    filter,
                    source,
                    target,
                    a.filterNodeName(),
                    create(jobs, txn, request(nodes, a, source, target, a.sync(), filter::remove)),
                    jobs);
        });
    }

    static Action driveBackup(Nodes nodes, JobRegistry jobs, JobTxn txn, DriveBackup a) {
        return backupAction(jobs, () -> {
            BlockNode source = lookupSource(nodes, a.device());
            blocked(source);
            checkFilterName(nodes, a.filterNodeName());
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
                createImage(nodes.graph(), a.target(), format, size, base);
            }
            BlockNode target = openTarget(nodes, a.target(), format, sync == MirrorSyncMode.NONE ? source : null);
            FilterSlot filter = new FilterSlot(nodes);
            Runnable close = () -> {
                filter.remove();
                closeTarget(nodes, target);
            };
            BackupJob job;
            try {
                job = create(jobs, txn, request(nodes, a, source, target, sync, close));
            } catch (TransactionException | RuntimeException e) {
                // no job: nothing else will close the target this opened
                close.run();
                throw e;
            }
            // from here the job's clean closes it, also when adding the filter fails
            return withFilter(filter, source, target, a.filterNodeName(), job, jobs);
        });
    }

    private static BackupRequest request(
            Nodes nodes, BackupCommon a, BlockNode source, BlockNode target, MirrorSyncMode sync, Runnable onClean) {
        return new BackupRequest(
                jobId(nodes, a.jobId(), a.device(), source),
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
                a.discardSource(),
                onClean);
    }

    private static BackupJob create(JobRegistry jobs, JobTxn txn, BackupRequest r) throws TransactionException {
        try {
            return Backup.create(jobs, txn, r);
        } catch (BackupException e) {
            throw new TransactionException(e.getMessage());
        }
    }

    /**
     * The job id: the one given, else the drive's id when the source is a drive's root (QEMU's
     * bdrv_get_device_name), else the device argument (qemu-storage-daemon refuses that one).
     */
    private static String jobId(Nodes nodes, String given, String device, BlockNode source) {
        if (given != null) {
            return given;
        }
        String drive = nodes.deviceName(source);
        return drive != null ? drive : device;
    }

    /**
     * The source: the node named, or below a filter node named (a running backup's filter): the
     * copy-before-write of Strata's backups sits on the node that holds the data.
     */
    private static BlockNode lookupSource(Nodes nodes, String name) throws TransactionException {
        BlockNode n = lookup(nodes, name);
        while (n.driver().isFilter()) {
            n = n.file().orElseThrow();
        }
        return n;
    }

    private static void checkFilterName(Nodes nodes, String name) throws TransactionException {
        if (name == null) {
            return;
        }
        try {
            nodes.graph().checkNewNodeName(name);
        } catch (BlockException e) {
            throw new TransactionException("Could not create node: " + e.getMessage());
        }
    }

    /** The filter node of one backup, added once its job exists and removed when it is cleaned. */
    private static final class FilterSlot {
        private final Nodes nodes;
        private volatile BlockNode node;

        FilterSlot(Nodes nodes) {
            this.nodes = nodes;
        }

        void remove() {
            BlockNode n = node;
            node = null;
            if (n != null) {
                try {
                    nodes.graph().removeFilter(n);
                } catch (IOException e) {
                    LOG.warn("closing filter node '{}' failed: {}", n.nodeName(), e.getMessage());
                }
            }
        }
    }

    /** Puts the job's copy-before-write filter in the graph (named, or named automatically). */
    private static BackupJob withFilter(
            FilterSlot slot, BlockNode source, BlockNode target, String name, BackupJob job, JobRegistry jobs)
            throws TransactionException {
        try {
            slot.node = slot.nodes.graph().addFilter(name, new CopyBeforeWriteFilter(source, target));
            return job;
        } catch (BlockException e) {
            jobs.cancelSync(job);
            throw new TransactionException("Could not create node: " + e.getMessage());
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
    private static void createImage(BlockGraph graph, String filename, String format, long size, BlockNode base)
            throws TransactionException {
        try {
            switch (format) {
                case "qcow2" -> {
                    Qcow2Create.Options o = Qcow2Create.Options.of(size);
                    if (base != null) {
                        o = o.withBacking(base.filename(), base.driverName());
                    }
                    Qcow2Create.create(graph, filename, o);
                }
                case "raw" -> RawDriver.create(graph, filename, size);
                case "file" -> graph.createFile(filename, size);
                default ->
                    throw new TransactionException("Format driver '" + format + "' does not support image creation");
            }
        } catch (IOException e) {
            if (e instanceof BlockException b && b.errno() == BlockException.EAGAIN) {
                // an image lock conflict, in QEMU's words without the hint qemu-img adds on its own line
                throw new TransactionException(
                        b.getMessage().lines().findFirst().orElse(""));
            }
            throw new TransactionException("Could not create '" + filename + "': " + String.valueOf(e.getMessage()));
        }
    }

    /** Opens the target as QEMU does: discard=unmap, the format given or probed, as a graph node. */
    private static BlockNode openTarget(Nodes nodes, String filename, String format, BlockNode backingNode)
            throws TransactionException {
        try {
            // a json: filename or a protocol prefix names the whole target (a qcow2 over blkdebug)
            BlockOptions o = nodes.graph().imageOptions(filename, format);
            String fmt = o.requireString("driver");
            if (!o.has("discard")) {
                o.put("discard", "unmap");
            }
            if (backingNode != null && fmt.equals("qcow2") && !o.has("backing")) {
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
