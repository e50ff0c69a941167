package dev.strata.qmp.commands;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.dirty.BitmapException;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.qmp.QmpException;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Finding nodes and bitmaps by name as QEMU's commands do, with QEMU's two wordings for a missing
 * node (bdrv_lookup_bs for block-dirty-bitmap-add, block_dirty_bitmap_lookup for the others).
 *
 * <p>Every node with a name counts, including the automatically named children of nodes given
 * inline ("#block12"), as in QEMU. A "device" is a drive's id ({@code --drive}, {@code drive_add});
 * where QEMU looks up "a device or a node-name" the drive's id is tried first, then node-names.
 */
final class Nodes {
    private final BlockGraph graph;

    Nodes(BlockGraph graph) {
        this.graph = graph;
    }

    BlockGraph graph() {
        return graph;
    }

    /** Every node, newest first, each followed by the children it opened (QEMU's listing order). */
    List<BlockNode> all() {
        List<BlockNode> out = new ArrayList<>();
        Map<BlockNode, Boolean> seen = new IdentityHashMap<>();
        for (BlockNode n : graph.nodes().reversed()) {
            collect(n, out, seen);
        }
        return out;
    }

    private static void collect(BlockNode n, List<BlockNode> out, Map<BlockNode, Boolean> seen) {
        if (seen.put(n, Boolean.TRUE) != null) {
            return;
        }
        out.add(n);
        for (BlockNode c : n.children().values()) {
            if (c.autoNamed()) {
                collect(c, out, seen);
            }
        }
    }

    /**
     * Graph nodes that no other node uses as a child and no drive holds, oldest first: the nodes
     * query-block lists after the drives. A job's filter node is not one, and does not hide the
     * nodes below it.
     */
    List<BlockNode> roots() {
        List<BlockNode> nodes = graph.nodes();
        Map<BlockNode, Boolean> used = new IdentityHashMap<>();
        for (BlockNode n : nodes) {
            if (!n.driver().isFilter()) {
                markChildren(n, used);
            }
        }
        for (var d : graph.drives()) {
            used.put(d.root(), Boolean.TRUE);
        }
        List<BlockNode> out = new ArrayList<>();
        for (BlockNode n : nodes) {
            if (!used.containsKey(n) && !n.driver().isFilter()) {
                out.add(n);
            }
        }
        return out;
    }

    private static void markChildren(BlockNode n, Map<BlockNode, Boolean> used) {
        for (BlockNode c : n.children().values()) {
            if (used.put(c, Boolean.TRUE) == null) {
                markChildren(c, used);
            }
        }
    }

    BlockNode find(String name) {
        for (BlockNode n : all()) {
            if (n.nodeName().equals(name)) {
                return n;
            }
        }
        return null;
    }

    /** A drive's root by the drive's id, else a node by node-name (QEMU's bdrv_lookup_bs(name, name)). */
    BlockNode resolve(String name) {
        var drive = graph.drive(name);
        return drive.isPresent() ? drive.get().root() : find(name);
    }

    /** The id of the drive whose root is {@code node}, if any (QEMU's bdrv_get_device_name). */
    String deviceName(BlockNode node) {
        return graph.driveOf(node).map(dev.strata.block.Drive::id).orElse(null);
    }

    /** bdrv_lookup_bs(name, name): the node, or "Cannot find device='%s' nor node-name='%s'". */
    BlockNode lookupDeviceOrNode(String name) throws QmpException {
        BlockNode n = resolve(name);
        if (n == null) {
            throw new QmpException("Cannot find device='" + name + "' nor node-name='" + name + "'");
        }
        return n;
    }

    /** block_dirty_bitmap_lookup: "Node '%s' not found", then "Dirty bitmap '%s' not found". */
    BlockNode lookupNode(String name) throws QmpException {
        BlockNode n = resolve(name);
        if (n == null) {
            throw new QmpException("Node '" + name + "' not found");
        }
        return n;
    }

    DirtyBitmap lookupBitmap(String node, String name) throws QmpException {
        return bitmap(lookupNode(node), name);
    }

    static DirtyBitmap bitmap(BlockNode node, String name) throws QmpException {
        try {
            return node.bitmaps().lookup(name);
        } catch (BitmapException e) {
            throw new QmpException(e.getMessage());
        }
    }
}
