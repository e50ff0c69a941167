package dev.strata.qmp.commands;

import dev.strata.block.BlockNode;
import dev.strata.block.dirty.BitmapException;
import dev.strata.job.JobRegistry;
import dev.strata.job.JobTxn;
import dev.strata.qmp.Command;
import dev.strata.qmp.Commands;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.schema.QType;
import dev.strata.qmp.schema.QType.EnumType;
import dev.strata.qmp.schema.QType.ListType;
import dev.strata.qmp.schema.QType.Member;
import dev.strata.qmp.schema.QType.StructType;
import dev.strata.qmp.schema.QType.UnionType;
import dev.strata.qmp.schema.Qapi;
import dev.strata.qmp.schema.Schema;
import dev.strata.txn.Action;
import dev.strata.txn.Transaction;
import dev.strata.txn.TransactionException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code transaction}: QAPI's TransactionAction union ({@code type} + {@code data}) for the bitmap
 * actions, the two backups and {@code abort}, run by {@link Transaction} with every node drained,
 * and {@code properties.completion-mode} (individual: a job transaction per backup; grouped: one
 * shared by all, so they finish or fail together).
 */
public final class TransactionCommands {
    private TransactionCommands() {}

    /** QAPI Abort: no members. */
    public record Abort() {}

    /** QAPI ActionCompletionMode. */
    @Qapi.Name("ActionCompletionMode")
    public enum ActionCompletionMode {
        INDIVIDUAL,
        GROUPED
    }

    /** QAPI TransactionProperties. */
    public record TransactionProperties(@Qapi.Optional ActionCompletionMode completionMode) {}

    private static final Map<String, Class<?>> KINDS = kinds();

    private static Map<String, Class<?>> kinds() {
        Map<String, Class<?>> k = new LinkedHashMap<>();
        k.put("abort", Abort.class);
        k.put("block-dirty-bitmap-add", BitmapCommands.BlockDirtyBitmapAdd.class);
        k.put("block-dirty-bitmap-remove", BitmapCommands.BlockDirtyBitmap.class);
        k.put("block-dirty-bitmap-clear", BitmapCommands.BlockDirtyBitmap.class);
        k.put("block-dirty-bitmap-enable", BitmapCommands.BlockDirtyBitmap.class);
        k.put("block-dirty-bitmap-disable", BitmapCommands.BlockDirtyBitmap.class);
        k.put("block-dirty-bitmap-merge", BitmapCommands.BlockDirtyBitmapMerge.class);
        k.put("blockdev-backup", BackupCommands.BlockdevBackup.class);
        k.put("drive-backup", BackupCommands.DriveBackup.class);
        return k;
    }

    /** The arguments of {@code transaction}: {@code actions} (a list of the union) and {@code properties}. */
    static StructType argumentType() {
        Map<String, StructType> variants = new LinkedHashMap<>();
        for (var e : KINDS.entrySet()) {
            QType data = Schema.of(e.getValue());
            variants.put(
                    e.getKey(),
                    new StructType(
                            e.getValue().getSimpleName() + "Wrapper",
                            List.of(new Member("data", data, false, null)),
                            null));
        }
        StructType base = new StructType(
                "q_obj_TransactionAction-base",
                List.of(new Member(
                        "type", new EnumType("TransactionActionKind", List.copyOf(KINDS.keySet()), null), false, null)),
                null);
        UnionType action = new UnionType("TransactionAction", base, "type", variants);
        return new StructType(
                "q_obj_transaction-arg",
                List.of(
                        new Member("actions", new ListType(action), false, null),
                        new Member("properties", Schema.of(TransactionProperties.class), true, null)),
                null);
    }

    static void register(Commands commands, Nodes nodes, JobRegistry jobs, JobLauncher launcher) {
        commands.addBoxed("transaction", argumentType(), "{}", (args, ctx) -> {
            run(nodes, jobs, launcher, ctx, args);
            return null;
        });
    }

    @SuppressWarnings("unchecked")
    private static void run(
            Nodes nodes, JobRegistry jobs, JobLauncher launcher, Command.Context ctx, Map<String, Object> args)
            throws QmpException {
        List<Map<String, Object>> actions = (List<Map<String, Object>>) args.get("actions");
        ActionCompletionMode mode =
                args.get("properties") instanceof TransactionProperties p && p.completionMode() != null
                        ? p.completionMode()
                        : ActionCompletionMode.INDIVIDUAL;
        JobTxn group = null;
        if (mode != ActionCompletionMode.INDIVIDUAL) {
            for (Map<String, Object> a : actions) {
                String type = (String) a.get("type");
                if (!BackupCommands.JOB_ACTIONS.contains(type)) {
                    throw new QmpException(
                            "Action '" + type + "' does not support Transaction property completion-mode = grouped");
                }
            }
            group = new JobTxn();
        }
        List<Action> list = new ArrayList<>();
        for (Map<String, Object> a : actions) {
            list.add(action(nodes, jobs, group, (String) a.get("type"), a.get("data")));
        }
        run(nodes, launcher, ctx, list);
    }

    /** Runs one command's actions as a transaction, starting job threads once the reply is queued. */
    static void runOne(Nodes nodes, JobLauncher launcher, Command.Context ctx, Action action) throws QmpException {
        run(nodes, launcher, ctx, List.of(action));
    }

    private static void run(Nodes nodes, JobLauncher launcher, Command.Context ctx, List<Action> actions)
            throws QmpException {
        launcher.startAfterReply(ctx, () -> {
            try {
                Transaction.run(actions, drainable(nodes));
            } catch (TransactionException e) {
                throw new QmpException(e.getMessage());
            }
        });
    }

    /**
     * Every open node (QEMU drains all I/O for a transaction) but filter nodes: a request through
     * a filter waits at the drained node below it, so draining the filter too would wait forever.
     */
    private static List<BlockNode> drainable(Nodes nodes) {
        return nodes.all().stream()
                .filter(n -> !n.isClosed() && !n.driver().isFilter())
                .toList();
    }

    private static Action action(Nodes nodes, JobRegistry jobs, JobTxn group, String type, Object data) {
        JobTxn txn = group != null ? group : new JobTxn();
        return switch (data) {
            case Abort a -> Action.abortAction();
            case BitmapCommands.BlockDirtyBitmapAdd a ->
                Action.of(
                        () -> step(() -> BitmapCommands.add(nodes, a)),
                        b -> {},
                        b -> nodes.resolve(a.node()).bitmaps().release(b));
            case BitmapCommands.BlockDirtyBitmapMerge m ->
                Action.undoable(() -> step(() -> BitmapCommands.mergeUndoable(nodes, m)));
            case BitmapCommands.BlockDirtyBitmap b
            when type.equals("block-dirty-bitmap-remove") ->
                Action.of(
                        () -> step(() -> bitmapStep(nodes, b, (n) -> n.bitmaps().holdForRemoval(b.name()))),
                        held -> nodes.resolve(b.node()).bitmaps().dropHeld(held),
                        held -> nodes.resolve(b.node()).bitmaps().unhold(held));
            case BitmapCommands.BlockDirtyBitmap b
            when type.equals("block-dirty-bitmap-clear") ->
                Action.undoable(() ->
                        step(() -> bitmapStep(nodes, b, n -> n.bitmaps().clearUndoable(b.name()))));
            case BitmapCommands.BlockDirtyBitmap b ->
                Action.undoable(() -> step(() -> bitmapStep(
                        nodes,
                        b,
                        n -> n.bitmaps().setEnabledUndoable(b.name(), type.equals("block-dirty-bitmap-enable")))));
            case BackupCommands.BlockdevBackup bb -> BackupCommands.blockdevBackup(nodes, jobs, txn, bb);
            case BackupCommands.DriveBackup db -> BackupCommands.driveBackup(nodes, jobs, txn, db);
            default -> throw new IllegalStateException("unknown action " + type);
        };
    }

    /** A step of the QMP layer that refuses with a QmpException. */
    @FunctionalInterface
    private interface QmpStep<T> {
        T run() throws QmpException;
    }

    private static <T> T step(QmpStep<T> s) throws TransactionException {
        try {
            return s.run();
        } catch (QmpException e) {
            throw new TransactionException(e.desc());
        }
    }

    /** A bitmap operation on a looked-up node. */
    @FunctionalInterface
    private interface BitmapStep<T> {
        T run(BlockNode node) throws BitmapException;
    }

    private static <T> T bitmapStep(Nodes nodes, BitmapCommands.BlockDirtyBitmap b, BitmapStep<T> s)
            throws QmpException {
        BlockNode node = nodes.lookupNode(b.node());
        try {
            return s.run(node);
        } catch (BitmapException e) {
            throw new QmpException(e.getMessage());
        }
    }
}
