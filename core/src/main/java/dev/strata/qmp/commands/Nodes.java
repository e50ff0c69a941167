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
 * inline ("#block12"), as in QEMU. A root node's name is also its device name (Strata has no
 * separate BlockBackend names).
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

    /** Graph nodes no other node uses as a child, oldest first: Strata's "drives". */
    List<BlockNode> roots() {
        List<BlockNode> nodes = graph.nodes();
        Map<BlockNode, Boolean> used = new IdentityHashMap<>();
        for (BlockNode n : nodes) {
            markChildren(n, used);
        }
        List<BlockNode> out = new ArrayList<>();
        for (BlockNode n : nodes) {
            if (!used.containsKey(n)) {
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

    /** bdrv_lookup_bs(name, name): the node, or "Cannot find device='%s' nor node-name='%s'". */
    BlockNode lookupDeviceOrNode(String name) throws QmpException {
        BlockNode n = find(name);
        if (n == null) {
            throw new QmpException("Cannot find device='" + name + "' nor node-name='" + name + "'");
        }
        return n;
    }

    /** block_dirty_bitmap_lookup: "Node '%s' not found", then "Dirty bitmap '%s' not found". */
    BlockNode lookupNode(String name) throws QmpException {
        BlockNode n = find(name);
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
