package dev.strata.qmp.commands;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.Drive;
import dev.strata.qmp.Commands;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.schema.Qapi;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The node graph at run time: blockdev-add, blockdev-del, query-named-block-nodes, query-block
 * (drives first, then root nodes without a drive).
 */
public final class BlockCommands {
    private BlockCommands() {}

    /** Arguments of blockdev-del. */
    public record BlockdevDelArguments(String nodeName) {}

    /** Arguments of query-named-block-nodes. */
    public record QueryNamedBlockNodesArguments(
            @Qapi.Default("false") boolean flat) {}

    public static void register(Commands commands, BlockGraph graph) {
        Nodes nodes = new Nodes(graph);
        BlockdevSchema schema = new BlockdevSchema(graph::hasDriver);
        commands.addBoxed("blockdev-add", schema.union(), "{}", (options, ctx) -> {
            add(nodes, options);
            return null;
        });
        commands.add("blockdev-del", BlockdevDelArguments.class, "{}", (args, ctx) -> {
            delete(nodes, args.nodeName());
            return null;
        });
        commands.add(
                "query-named-block-nodes",
                QueryNamedBlockNodesArguments.class,
                "[BlockDeviceInfo]",
                (args, ctx) -> namedNodes(nodes, args.flat()));
        commands.add("query-block", "[BlockInfo]", () -> blockInfo(nodes));
    }

    /**
     * Opens a node from options already checked against BlockdevOptions (QMP's blockdev-add and
     * the daemon's {@code --blockdev} share this).
     */
    public static BlockNode add(BlockGraph graph, Map<String, Object> options) throws QmpException {
        return add(new Nodes(graph), options);
    }

    private static BlockNode add(Nodes nodes, Map<String, Object> options) throws QmpException {
        if (!(options.get("node-name") instanceof String name)) {
            throw new QmpException("'node-name' must be specified for the root node");
        }
        try {
            BlockGraph.checkNodeName(name);
            if (nodes.find(name) != null) {
                // refused before anything is opened, so a second open cannot trip on the image lock
                throw new QmpException("Duplicate nodes with node-name='" + name + "'");
            }
            nodes.graph().checkNewNodeName(name);
            return nodes.graph().add(BlockOptions.fromMap(options));
        } catch (IOException e) {
            throw new QmpException(e.getMessage());
        }
    }

    private static void delete(Nodes nodes, String name) throws QmpException {
        BlockGraph graph = nodes.graph();
        BlockNode node = graph.find(name).orElse(null);
        if (node == null) {
            if (nodes.find(name) != null) {
                throw new QmpException("Node " + name + " is not owned by the monitor");
            }
            throw new QmpException("Failed to find node with node-name='" + name + "'");
        }
        if (node.blocker().isPresent()) {
            throw new QmpException(
                    "Node '" + name + "' is busy: " + node.blocker().get());
        }
        try {
            if (!node.readOnly() && !node.isClosed()) {
                node.flush();
            }
            graph.remove(name);
        } catch (BlockException e) {
            throw new QmpException(e.getMessage());
        } catch (IOException e) {
            throw new QmpException("Failed to close node '" + name + "': " + e.getMessage());
        }
    }

    private static List<NodeInfo.BlockDeviceInfo> namedNodes(Nodes nodes, boolean flat) throws QmpException {
        List<NodeInfo.BlockDeviceInfo> out = new ArrayList<>();
        for (BlockNode n : nodes.all()) {
            out.add(info(n, flat));
        }
        return out;
    }

    private static List<NodeInfo.BlockInfo> blockInfo(Nodes nodes) throws QmpException {
        List<NodeInfo.BlockInfo> out = new ArrayList<>();
        for (Drive d : nodes.graph().drives()) {
            out.add(new NodeInfo.BlockInfo(d.id(), "unknown", true, false, info(d.root(), false)));
        }
        for (BlockNode n : nodes.roots()) {
            out.add(new NodeInfo.BlockInfo(n.nodeName(), "unknown", false, false, info(n, false)));
        }
        return out;
    }

    private static NodeInfo.BlockDeviceInfo info(BlockNode n, boolean flat) throws QmpException {
        try {
            return NodeInfo.deviceInfo(n, flat);
        } catch (IOException e) {
            throw new QmpException("Cannot query node '" + n.nodeName() + "': " + e.getMessage());
        }
    }
}
