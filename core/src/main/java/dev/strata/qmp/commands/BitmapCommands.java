package dev.strata.qmp.commands;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.dirty.BitmapException;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.dirty.DirtyBitmaps;
import dev.strata.qmp.Commands;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.schema.Qapi;
import java.util.ArrayList;
import java.util.List;

/**
 * The dirty-bitmap commands (block-dirty-bitmap-add/-remove/-clear/-enable/-disable/-merge and
 * x-debug-block-dirty-bitmap-sha256), with QEMU's checks in QEMU's order; the rules themselves
 * live in {@link DirtyBitmaps}.
 */
public final class BitmapCommands {
    private BitmapCommands() {}

    /** QAPI's BlockDirtyBitmap. */
    public record BlockDirtyBitmap(String node, String name) implements BlockDirtyBitmapOrStr {}

    /** QAPI's BlockDirtyBitmapAdd. */
    public record BlockDirtyBitmapAdd(
            String node,
            String name,
            @Qapi.Optional @Qapi.Int(Qapi.IntKind.UINT32) Long granularity,
            @Qapi.Default("false") boolean persistent,
            @Qapi.Default("false") boolean disabled) {}

    /** The string branch of BlockDirtyBitmapOrStr: a bitmap on the target's node. */
    @Qapi.Unboxed
    public record LocalBitmap(String name) implements BlockDirtyBitmapOrStr {}

    /** QAPI's BlockDirtyBitmapOrStr. */
    public sealed interface BlockDirtyBitmapOrStr permits LocalBitmap, BlockDirtyBitmap {}

    /** QAPI's BlockDirtyBitmapMerge. */
    public record BlockDirtyBitmapMerge(String node, String target, List<BlockDirtyBitmapOrStr> bitmaps) {}

    /** QAPI's BlockDirtyBitmapSha256. */
    public record BlockDirtyBitmapSha256(String sha256) {}

    public static void register(Commands commands, BlockGraph graph) {
        Nodes nodes = new Nodes(graph);
        commands.add("block-dirty-bitmap-add", BlockDirtyBitmapAdd.class, "{}", (a, ctx) -> {
            add(nodes, a);
            return null;
        });
        commands.add("block-dirty-bitmap-remove", BlockDirtyBitmap.class, "{}", (a, ctx) -> {
            BlockNode node = nodes.lookupNode(a.node());
            run(() -> node.bitmaps().remove(a.name()));
            return null;
        });
        commands.add("block-dirty-bitmap-clear", BlockDirtyBitmap.class, "{}", (a, ctx) -> {
            BlockNode node = nodes.lookupNode(a.node());
            run(() -> node.bitmaps().clear(a.name()));
            return null;
        });
        commands.add("block-dirty-bitmap-enable", BlockDirtyBitmap.class, "{}", (a, ctx) -> {
            BlockNode node = nodes.lookupNode(a.node());
            run(() -> node.bitmaps().enable(a.name()));
            return null;
        });
        commands.add("block-dirty-bitmap-disable", BlockDirtyBitmap.class, "{}", (a, ctx) -> {
            BlockNode node = nodes.lookupNode(a.node());
            run(() -> node.bitmaps().disable(a.name()));
            return null;
        });
        commands.add("block-dirty-bitmap-merge", BlockDirtyBitmapMerge.class, "{}", (a, ctx) -> {
            merge(nodes, a);
            return null;
        });
        commands.add(
                "x-debug-block-dirty-bitmap-sha256",
                BlockDirtyBitmap.class,
                "BlockDirtyBitmapSha256",
                (a, ctx) -> new BlockDirtyBitmapSha256(
                        nodes.lookupBitmap(a.node(), a.name()).sha256()));
    }

    /** A bitmap operation that may refuse with QEMU's words. */
    @FunctionalInterface
    private interface BitmapAction {
        void run() throws BitmapException;
    }

    private static void run(BitmapAction action) throws QmpException {
        try {
            action.run();
        } catch (BitmapException e) {
            throw new QmpException(e.getMessage());
        }
    }

    static DirtyBitmap add(Nodes nodes, BlockDirtyBitmapAdd a) throws QmpException {
        if (a.name().isEmpty()) {
            throw new QmpException("Bitmap name cannot be empty");
        }
        BlockNode node = nodes.lookupDeviceOrNode(a.node());
        try {
            return node.addBitmap(a.name(), a.granularity(), a.disabled(), a.persistent());
        } catch (BitmapException e) {
            throw new QmpException(e.getMessage());
        }
    }

    private static void merge(Nodes nodes, BlockDirtyBitmapMerge a) throws QmpException {
        mergeUndoable(nodes, a);
    }

    /** Merges as the command does; returns how to restore the target (a transaction's abort). */
    static Runnable mergeUndoable(Nodes nodes, BlockDirtyBitmapMerge a) throws QmpException {
        BlockNode node = nodes.lookupNode(a.node());
        DirtyBitmap target = Nodes.bitmap(node, a.target());
        List<DirtyBitmap> sources = new ArrayList<>();
        for (BlockDirtyBitmapOrStr s : a.bitmaps()) {
            sources.add(
                    switch (s) {
                        case LocalBitmap l -> Nodes.bitmap(node, l.name());
                        case BlockDirtyBitmap b -> nodes.lookupBitmap(b.node(), b.name());
                    });
        }
        if (sources.isEmpty()) {
            // qemu-storage-daemon 7.2 aborts on an empty list; a merge of nothing is a caller's mistake
            throw new QmpException("Parameter 'bitmaps' must name at least one bitmap to merge");
        }
        try {
            return node.bitmaps().mergeUndoable(target, sources);
        } catch (BitmapException e) {
            throw new QmpException(e.getMessage());
        }
    }
}
