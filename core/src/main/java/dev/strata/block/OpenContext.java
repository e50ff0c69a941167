package dev.strata.block;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What a driver being opened may use: its flags, and a way to open children that the new node
 * will own. One context serves one node; the chain of image files above it travels along so that a
 * backing loop or an over-deep chain is refused instead of recursing without end.
 */
public final class OpenContext {
    /** Deepest backing chain Strata opens; QEMU has no fixed limit, but a loop must end somewhere. */
    public static final int MAX_CHAIN_DEPTH = 128;

    private final BlockGraph graph;
    private final OpenFlags flags;
    private final List<Path> chain;
    private final boolean unmap;
    private final List<BlockNode> opened = new ArrayList<>();

    OpenContext(BlockGraph graph, OpenFlags flags, List<Path> chain, boolean unmap) {
        this.graph = graph;
        this.flags = flags;
        this.chain = chain;
        this.unmap = unmap;
    }

    public OpenFlags flags() {
        return flags;
    }

    public boolean readOnly() {
        return flags.readOnly();
    }

    /**
     * Opens the child given under {@code key}: nested options open a new node owned by this one; a
     * string names an existing node of the graph. Returns null when the key is absent.
     */
    public BlockNode openChild(BlockOptions options, String key, OpenFlags childFlags) throws IOException {
        Object v = options.get(key);
        return switch (v) {
            case null -> null;
            case BlockOptions nested -> own(graph.openNode(nested, childFlags, chain, false, unmap));
            case String ref ->
                graph.find(ref)
                        .orElseThrow(() ->
                                new BlockException("Cannot find device='" + ref + "' nor node-name='" + ref + "'"));
            default -> throw new IllegalArgumentException("Invalid parameter type for '" + key + "'");
        };
    }

    /** A node of the graph by name (a filter's bitmap lives on a node the options name). */
    public java.util.Optional<BlockNode> findNode(String name) {
        return graph.find(name);
    }

    /**
     * Opens a backing image named inside an image: {@code filename} relative to the image's
     * directory, {@code format} or probed when null. Always read-only, as in QEMU.
     */
    public BlockNode openBackingImage(Path imagePath, String filename, String format) throws IOException {
        // a json: backing name is the backing node's options: relative to nothing, no path to loop on
        boolean json = Filenames.isJson(filename);
        String name = json ? filename : resolveBacking(imagePath, filename).toString();
        List<Path> below = new ArrayList<>(chain);
        below.add(canonical(imagePath));
        if (!json && below.contains(canonical(Path.of(name)))) {
            throw new BlockException("Backing file '" + filename + "' of '" + imagePath + "' creates an infinite loop");
        }
        if (below.size() >= MAX_CHAIN_DEPTH) {
            throw new BlockException("Backing chain of '" + below.getFirst() + "' is deeper than " + MAX_CHAIN_DEPTH
                    + " images; refusing to open '" + filename + "'");
        }
        return own(graph.openImageInChain(name, format, flags.asReadOnly(), List.copyOf(below), false));
    }

    public static Path resolveBacking(Path imagePath, String filename) {
        Path p = Path.of(filename);
        if (p.isAbsolute() || filename.contains("://")) {
            return p;
        }
        Path dir = imagePath.toAbsolutePath().getParent();
        return dir == null ? p : dir.resolve(p);
    }

    private static Path canonical(Path p) {
        try {
            return p.toRealPath();
        } catch (IOException e) {
            return p.toAbsolutePath().normalize();
        }
    }

    private BlockNode own(BlockNode node) {
        opened.add(node);
        return node;
    }

    List<BlockNode> ownedChildren() {
        return opened;
    }

    /** Closes what this context opened; used when the driver's own open fails. */
    void closeOwned() {
        for (BlockNode n : opened.reversed()) {
            try {
                n.close();
            } catch (IOException ignored) {
                // the open already failed; that error is the one to report
            }
        }
    }
}
