package dev.strata.qmp.commands;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.dirty.BitmapException;
import dev.strata.qmp.Commands;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.schema.Qapi;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * {@code block_resize}: grows or shrinks a node in use, its dirty bitmaps following (bits past the
 * end dropped, the new area clean), with qemu-storage-daemon 7.2's checks in its order and its
 * texts: the node ({@code device} as a drive or node name, else {@code node-name}), the size,
 * the node's op blockers (a backup's target, a backing file: "Device '...' is in use"), then the
 * users that do not share the right to resize it (QEMU's permission conflicts: a qcow2 node
 * using it as its file, an NBD export, a running backup's copy-before-write), then the resize
 * itself ({@code BlockNode.truncate}: "Image is read-only", the driver's refusals, a busy bitmap).
 *
 * <p>A raw node whose file is resized changes length with it, as in QEMU; its bitmaps are resized
 * to the raw node's new length too.
 */
public final class ResizeCommands {
    private ResizeCommands() {}

    /** Arguments of block_resize (QAPI: device and node-name optional, size an int). */
    public record BlockResizeArguments(
            @Qapi.Optional String device, @Qapi.Optional String nodeName, long size) {}

    /** One user of a node in the graph: the parent node and the role it gives the node. */
    private record Parent(BlockNode node, String role) {}

    public static void register(Commands commands, BlockGraph graph) {
        Nodes nodes = new Nodes(graph);
        commands.add("block_resize", BlockResizeArguments.class, "{}", (a, ctx) -> {
            resize(nodes, a);
            return null;
        });
    }

    private static void resize(Nodes nodes, BlockResizeArguments a) throws QmpException {
        BlockNode node = lookup(nodes, a.device(), a.nodeName());
        if (a.size() < 0) {
            throw new QmpException("Parameter 'size' expects a >0 size");
        }
        List<Parent> parents = parents(nodes, node);
        // a backup's filter node holds QEMU's op blockers, as a backup's target does; QEMU puts
        // the filter in a drive's place while the backup runs, so the drive is blocked too
        boolean driveUnderFilter = a.device() != null
                && nodes.graph().drive(a.device()).isPresent()
                && parents.stream().anyMatch(p -> p.node().driver().isFilter());
        if (node.blocker().isPresent()
                || node.driver().isFilter()
                || driveUnderFilter
                || parents.stream().anyMatch(p -> p.role().equals("backing"))) {
            // QEMU prints the device argument as given, "(null)" when there was none
            throw new QmpException("Device '" + (a.device() == null ? "(null)" : a.device()) + "' is in use");
        }
        String unsharedBy = unsharedBy(nodes, node, parents);
        if (unsharedBy != null) {
            throw new QmpException("Permission conflict on node '" + node.nodeName()
                    + "': permissions 'resize' are both required by an unnamed block device (uses node '"
                    + node.nodeName() + "' as 'root' child) and unshared by " + unsharedBy + ".");
        }
        List<BlockNode> following = following(nodes, parents);
        try {
            for (BlockNode f : following) {
                f.bitmaps().checkResizable();
            }
            node.truncate(a.size());
            for (BlockNode f : following) {
                f.bitmaps().resize(f.length());
            }
        } catch (BitmapException | BlockException e) {
            throw new QmpException(e.getMessage());
        } catch (IOException e) {
            throw new QmpException("Could not resize node '" + node.nodeName() + "': " + e.getMessage());
        }
    }

    /** bdrv_lookup_bs: the device (a drive or, in Strata, a node name), else the node-name. */
    private static BlockNode lookup(Nodes nodes, String device, String nodeName) throws QmpException {
        if (device != null) {
            try {
                return nodes.lookupDeviceOrNode(device);
            } catch (QmpException e) {
                // not a device: the node-name decides, and the error names both arguments
            }
        }
        BlockNode n = nodeName == null ? null : nodes.find(nodeName);
        if (n == null) {
            throw new QmpException("Cannot find device='" + (device == null ? "" : device) + "' nor node-name='"
                    + (nodeName == null ? "" : nodeName) + "'");
        }
        return n;
    }

    private static List<Parent> parents(Nodes nodes, BlockNode node) {
        List<Parent> out = new ArrayList<>();
        for (BlockNode n : nodes.all()) {
            for (Map.Entry<String, BlockNode> c : n.children().entrySet()) {
                if (c.getValue() == node) {
                    out.add(new Parent(n, c.getKey()));
                }
            }
        }
        return out;
    }

    /**
     * Who keeps the node from changing size, in QEMU's words ("node 'x' (uses node 'y' as 'file'
     * child)", "an unnamed block device (...)"), or null. raw and blkdebug pass their own users'
     * wishes down to their child, as QEMU's filters and raw do; a format with metadata never
     * shares the resizing of its file.
     */
    private static String unsharedBy(Nodes nodes, BlockNode node, List<Parent> parents) {
        String child = "(uses node '" + node.nodeName() + "' as ";
        for (Parent p : parents) {
            if (p.node().driver().isFilter()) {
                // a running backup's copy-before-write filter does not share resizing its source
                return "node '" + p.node().nodeName() + "' " + child + "'" + p.role() + "' child)";
            }
        }
        if (node.hasUsers()) {
            return "an unnamed block device " + child + "'root' child)";
        }
        for (Parent p : parents) {
            boolean passesDown =
                    p.node().driverName().equals("raw") || p.node().driverName().equals("blkdebug");
            if (!passesDown || unsharedBy(nodes, p.node(), parents(nodes, p.node())) != null) {
                return "node '" + p.node().nodeName() + "' " + child + "'" + p.role() + "' child)";
            }
        }
        return null;
    }

    /** raw nodes above a resized node (through raw and blkdebug): their length follows it. */
    private static List<BlockNode> following(Nodes nodes, List<Parent> parents) {
        List<BlockNode> out = new ArrayList<>();
        for (Parent p : parents) {
            if (p.node().driverName().equals("raw") || p.node().driverName().equals("blkdebug")) {
                out.add(p.node());
                out.addAll(following(nodes, parents(nodes, p.node())));
            }
        }
        return out;
    }
}
