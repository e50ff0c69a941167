package dev.strata.block;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The nodes a process has open, by node-name, and the drivers it can open them with.
 *
 * <p>Nodes opened with options become graph nodes; children opened inside them are owned by their
 * parent node (and get automatic names "#blockN" unless named). Drivers are registered by name
 * with an optional format probe, so this package needs no driver's code.
 *
 * <p>Concurrency: the node map is guarded by {@code this}; opening and closing are rare and may
 * block on I/O, so callers serialise them (the daemon runs one QMP command at a time).
 */
public final class BlockGraph implements AutoCloseable {
    /** Scores a file's first bytes: &gt; 0 means "looks like mine"; the highest score wins. */
    @FunctionalInterface
    public interface FormatProbe {
        int score(ByteBuffer head, String filename);
    }

    /**
     * Creates (or empties) a host file of a given size: the "file" protocol's part of image
     * creation (QEMU's bdrv_create_file), taking the image lock so that a file in use is refused.
     */
    @FunctionalInterface
    public interface FileCreator {
        void create(String filename, long size) throws IOException;
    }

    private record Driver(DriverFactory factory, FormatProbe probe) {}

    private static final AtomicLong AUTO_NAMES = new AtomicLong();

    /** A fresh automatic node name ("#block123"), never given to another node. */
    private static String newAutoName() {
        return "#block" + AUTO_NAMES.incrementAndGet();
    }

    private final Map<String, Driver> drivers = new LinkedHashMap<>();
    private FileCreator fileCreator;
    // guarded by this
    private final Map<String, BlockNode> nodes = new LinkedHashMap<>();
    // guarded by this
    private final Map<String, Drive> drives = new LinkedHashMap<>();

    public BlockGraph register(String name, DriverFactory factory) {
        return register(name, factory, null);
    }

    public BlockGraph register(String name, DriverFactory factory, FormatProbe probe) {
        drivers.put(name, new Driver(factory, probe));
        return this;
    }

    /** Sets how {@link #createFile} creates host files (the "file" driver's create). */
    public BlockGraph registerFileCreator(FileCreator creator) {
        this.fileCreator = creator;
        return this;
    }

    /**
     * Creates {@code filename} as an empty host file of {@code size} bytes, or empties and sizes an
     * existing one, refusing a file another opener holds: the first step of every image creation.
     */
    public void createFile(String filename, long size) throws IOException {
        if (fileCreator == null) {
            throw new BlockException("Protocol driver 'file' does not support image creation", BlockException.ENOTSUP);
        }
        fileCreator.create(filename, size);
    }

    public boolean hasDriver(String name) {
        return drivers.containsKey(name);
    }

    /**
     * Opens a node from {@code --blockdev}/{@code blockdev-add} options and adds it to the graph
     * under its node-name (or a generated one).
     */
    public BlockNode add(BlockOptions options) throws IOException {
        return add(options, false);
    }

    /**
     * {@link #add}, with {@code noIo} for a node opened only to be described (qemu-img info's
     * open): see {@link OpenFlags#noIo}.
     */
    public BlockNode add(BlockOptions options, boolean noIo) throws IOException {
        return openNode(options, rootFlags(options, noIo), List.of(), true);
    }

    /**
     * Opens a node from options, as {@link #add} does, that does not join the graph: no name, not
     * listed, not closed with the graph; the caller closes it. For the short-lived nodes of image
     * creation, which must not show up among a daemon's nodes.
     */
    public BlockNode openDetached(BlockOptions options) throws IOException {
        return openNode(options, rootFlags(options, false), List.of(), false);
    }

    /** A root node's flags from its {@code read-only} and {@code force-share} options. */
    private static OpenFlags rootFlags(BlockOptions options, boolean noIo) throws BlockException {
        try {
            return new OpenFlags(options.bool("read-only", false), options.bool("force-share", false), false, noIo);
        } catch (IllegalArgumentException e) {
            throw new BlockException(e.getMessage(), BlockException.EINVAL);
        }
    }

    /**
     * Opens an image file as qemu-img and qemu-io do: {@code format} or probed, over a "file" node,
     * with discards passed on (the tools' {@code discard=unmap}; {@code --blockdev} defaults to
     * QEMU's {@code discard=ignore}).
     */
    public BlockNode openImage(String filename, String format, OpenFlags flags) throws IOException {
        BlockOptions opts = imageOptions(filename, format).put("discard", "unmap");
        return openNode(opts, flags, List.of(), true);
    }

    BlockNode openImageInChain(String filename, String format, OpenFlags flags, List<Path> chain, boolean root)
            throws IOException {
        return openNode(imageOptions(filename, format), flags, chain, root);
    }

    /**
     * The options of the node a filename names, as QEMU's open of a filename reads it: a {@code
     * json:} filename is the node's own options ({@code format}, when given, overrides its driver;
     * without either, the format is probed through its {@code file}); any other name is {@code
     * format} (or the probed format) over the protocol node the name selects ({@link Filenames}).
     */
    public BlockOptions imageOptions(String filename, String format) throws IOException {
        if (Filenames.isJson(filename)) {
            BlockOptions json = Filenames.json(filename);
            if (format != null) {
                json.put("driver", format);
            } else if (!json.has("driver")) {
                if (!(json.get("file") instanceof BlockOptions file)) {
                    throw new BlockException("Must specify either driver or file", BlockException.EINVAL);
                }
                json.put("driver", probe(copyOf(file), filename));
            }
            return json;
        }
        String fmt = format != null ? format : probe(filename);
        return BlockOptions.empty().put("driver", fmt).put("file", Filenames.protocol(filename));
    }

    /**
     * Probes the format of the image a filename names from its first bytes: the best-scoring
     * registered probe, else raw. A {@code json:} filename's format is its driver, or probed through
     * its {@code file}.
     */
    public String probe(String filename) throws IOException {
        if (Filenames.isJson(filename)) {
            return imageOptions(filename, null).requireString("driver");
        }
        return probe(Filenames.protocol(filename), filename);
    }

    private static BlockOptions copyOf(BlockOptions o) {
        return BlockOptions.fromMap(o.asMap());
    }

    /** Probes through the protocol node {@code protocol} opens, read-only and force-sharing. */
    private String probe(BlockOptions protocol, String filename) throws IOException {
        ByteBuffer head = ByteBuffer.allocate(512);
        // read-only and force-sharing: probing reads a header and conflicts with nobody
        protocol.put("read-only", true).put("force-share", true);
        try (BlockNode node = openNode(protocol, new OpenFlags(true, true), List.of(), false)) {
            head.limit((int) Math.min(head.capacity(), node.length()));
            node.driver().read(0, head);
        }
        head.flip();
        String best = "raw";
        int bestScore = 0;
        for (var e : drivers.entrySet()) {
            if (e.getValue().probe() != null) {
                int s = e.getValue().probe().score(head.duplicate(), filename);
                if (s > bestScore) {
                    bestScore = s;
                    best = e.getKey();
                }
            }
        }
        return best;
    }

    BlockNode openNode(BlockOptions options, OpenFlags inherited, List<Path> chain, boolean root) throws IOException {
        return openNode(options, inherited, chain, root, false);
    }

    /**
     * Opens a node. Named nodes and roots (what {@link #add} and {@link #openImage} return) join the
     * graph, so that {@link #close} releases them; unnamed children belong to their parent only.
     *
     * @param inheritedUnmap the parent's {@code discard} mode: a child given inline passes guest
     *     discards on exactly when its parent does, unless it says otherwise (as in QEMU)
     */
    BlockNode openNode(
            BlockOptions options, OpenFlags inherited, List<Path> chain, boolean root, boolean inheritedUnmap)
            throws IOException {
        String driverName;
        try {
            driverName = options.requireString("driver");
        } catch (IllegalArgumentException e) {
            throw new BlockException("Parameter 'driver' is missing", BlockException.EINVAL);
        }
        Driver driver = drivers.get(driverName);
        if (driver == null) {
            throw new BlockException(
                    "Parameter 'driver' does not accept value '" + driverName + "'", BlockException.EINVAL);
        }
        String name = options.string("node-name").orElse(null);
        boolean auto = name == null;
        if (auto) {
            name = newAutoName();
        } else {
            checkNodeName(name);
        }
        boolean ro = options.bool("read-only", inherited.readOnly());
        boolean share = options.bool("force-share", inherited.forceShare());
        boolean noFlush = inherited.noFlush();
        options.get("auto-read-only");
        boolean unmap = switch (options.get("discard")) {
            case null -> inheritedUnmap;
            case String d when d.equals("unmap") || d.equals("on") -> true;
            case String d when d.equals("ignore") || d.equals("off") -> false;
            default -> throw new BlockException("Invalid discard option", BlockException.EINVAL);
        };
        options.get("detect-zeroes");
        if (options.child("cache").isPresent()) {
            BlockOptions cache = options.child("cache").get();
            noFlush = cache.bool("no-flush", noFlush);
            cache.get("direct");
        } else {
            options.get("cache");
        }
        OpenFlags flags;
        try {
            flags = new OpenFlags(ro, share, noFlush, inherited.noIo());
        } catch (IllegalArgumentException e) {
            throw new BlockException(e.getMessage(), BlockException.EINVAL);
        }
        OpenContext ctx = new OpenContext(this, flags, chain, unmap);
        BlockDriver d;
        try {
            d = driver.factory().open(options, ctx);
        } catch (IOException | RuntimeException e) {
            ctx.closeOwned();
            if (e instanceof IllegalArgumentException iae) {
                throw new BlockException(iae.getMessage(), BlockException.EINVAL);
            }
            throw e;
        }
        List<String> unused = options.unusedKeys();
        if (!unused.isEmpty()) {
            closeQuietly(d, ctx);
            throw new BlockException(
                    "Block format '" + driverName + "' does not support the option '" + unused.getFirst() + "'",
                    BlockException.EINVAL);
        }
        BlockNode node = new BlockNode(name, auto, d, new ArrayList<>(ctx.ownedChildren()), unmap, flags.noFlush());
        boolean listed = !auto || root;
        synchronized (this) {
            try {
                if (listed) {
                    checkFree(name);
                }
                // last, so that an image refused above never had its bitmaps marked in use
                node.adoptStoredBitmaps();
            } catch (IOException e) {
                closeQuietly(d, ctx);
                throw e;
            }
            if (listed) {
                nodes.put(name, node);
            }
        }
        return node;
    }

    private static void closeQuietly(BlockDriver d, OpenContext ctx) {
        try {
            d.close();
        } catch (IOException ignored) {
            // reporting the option error matters more than a close failure
        }
        ctx.closeOwned();
    }

    /** QEMU's node-name rule: starts with a letter, then letters, digits, '-', '.', '_'; at most 31 bytes. */
    public static void checkNodeName(String name) throws BlockException {
        boolean ok = !name.isEmpty() && name.length() <= 31 && Character.isLetter(name.charAt(0));
        for (int i = 0; ok && i < name.length(); i++) {
            char c = name.charAt(i);
            ok = c < 128 && (Character.isLetterOrDigit(c) || c == '-' || c == '.' || c == '_');
        }
        if (!ok) {
            throw new BlockException("Invalid node-name: '" + name + "'", BlockException.EINVAL);
        }
    }

    /** Checks that a node could be added under {@code name}: well formed, and not taken. */
    public synchronized void checkNewNodeName(String name) throws BlockException {
        checkNodeName(name);
        checkFree(name);
    }

    /** QEMU's two uniqueness rules: node-names are unique, and no node-name equals a drive id. */
    private void checkFree(String name) throws BlockException {
        if (nodes.containsKey(name)) {
            throw new BlockException("Duplicate nodes with node-name='" + name + "'", BlockException.EINVAL);
        }
        if (drives.containsKey(name)) {
            throw new BlockException("node-name=" + name + " is conflicting with a device id", BlockException.EINVAL);
        }
    }

    /**
     * Opens a drive ({@code --drive}, HMP {@code drive_add}): its root node joins the graph under
     * its node-name (or an automatic one) and is in use by the drive until {@link #removeDrive}.
     */
    public Drive addDrive(DriveOptions.Parsed parsed) throws IOException {
        String id = parsed.id();
        synchronized (this) {
            if (drives.containsKey(id)) {
                throw new BlockException("Duplicate ID '" + id + "' for drive", BlockException.EINVAL);
            }
            if (nodes.containsKey(id)) {
                throw new BlockException(
                        "Device name '" + id + "' conflicts with an existing node name", BlockException.EINVAL);
            }
        }
        BlockNode root = add(parsed.root());
        Drive drive = new Drive(id, root);
        synchronized (this) {
            drives.put(id, drive);
        }
        return drive;
    }

    /**
     * Closes a drive and its root node (HMP {@code drive_del}). Refused while a job uses the root,
     * with QEMU's words, and while anything else still uses it (an export, a parent node).
     */
    public void removeDrive(String id) throws IOException {
        Drive drive;
        synchronized (this) {
            drive = drives.get(id);
            if (drive == null) {
                throw new BlockException("Device '" + id + "' not found");
            }
            BlockNode root = drive.root();
            if (underFilter(root)) {
                throw new BlockException("Node '" + id + "' is busy: block device is in use by block job: backup");
            }
            if (root.blocker().isPresent()) {
                throw new BlockException(
                        "Node '" + id + "' is busy: " + root.blocker().get());
            }
            for (BlockNode other : nodes.values()) {
                if (other != root && uses(other, root)) {
                    throw new BlockException(
                            "Node '" + root.nodeName() + "' is in use by node '" + other.nodeName() + "'");
                }
            }
            if (root.hasUsers()) {
                // an export still holds the root
                throw new BlockException("Node " + root.nodeName() + " is in use");
            }
            drives.remove(id);
            nodes.remove(root.nodeName());
        }
        drive.root().close();
    }

    /** Whether a job's filter node (a running backup's copy-before-write) sits on {@code node}. */
    private boolean underFilter(BlockNode node) {
        for (BlockNode n : nodes.values()) {
            if (n.driver().isFilter() && n.children().get("file") == node) {
                return true;
            }
        }
        return false;
    }

    public synchronized Optional<Drive> drive(String id) {
        return Optional.ofNullable(drives.get(id));
    }

    /** Drives in the order they were added. */
    public synchronized List<Drive> drives() {
        return List.copyOf(drives.values());
    }

    /** The drive whose root is {@code node}, if any. */
    public synchronized Optional<Drive> driveOf(BlockNode node) {
        return Optional.ofNullable(driveOfLocked(node));
    }

    private Drive driveOfLocked(BlockNode node) {
        for (Drive d : drives.values()) {
            if (d.root() == node) {
                return d;
            }
        }
        return null;
    }

    /**
     * Adds a filter node that a job owns (a backup's copy-before-write) under {@code name}, or an
     * automatic name when null. The node is in use by its job until {@link #removeFilter}.
     */
    public BlockNode addFilter(String name, BlockDriver driver) throws BlockException {
        boolean auto = name == null;
        String n = auto ? newAutoName() : name;
        if (!auto) {
            checkNodeName(n);
        }
        BlockNode node = new BlockNode(n, auto, driver, List.of(), true, false);
        synchronized (this) {
            checkFree(n);
            nodes.put(n, node);
        }
        node.attachUser();
        return node;
    }

    /** Drops a job's filter node from the graph and closes it (its children stay open). */
    public void removeFilter(BlockNode filter) throws IOException {
        synchronized (this) {
            nodes.remove(filter.nodeName(), filter);
        }
        filter.detachUser();
        filter.close();
    }

    public synchronized Optional<BlockNode> find(String nodeName) {
        return Optional.ofNullable(nodes.get(nodeName));
    }

    public synchronized List<BlockNode> nodes() {
        return List.copyOf(nodes.values());
    }

    /**
     * Closes a named node and drops it from the graph (blockdev-del); refused, as in QEMU, while a
     * drive or an export holds it or another node uses it as a child (a running backup's filter
     * node too).
     */
    public void remove(String nodeName) throws IOException {
        BlockNode node;
        synchronized (this) {
            node = nodes.get(nodeName);
            if (node == null) {
                throw new BlockException("Failed to find node with node-name='" + nodeName + "'");
            }
            // an export, or a drive (whose node goes with drive_del, not blockdev-del)
            if (node.hasUsers() || driveOfLocked(node) != null) {
                throw new BlockException("Node " + nodeName + " is in use");
            }
            for (BlockNode other : nodes.values()) {
                if (other != node && uses(other, node)) {
                    throw new BlockException("Block device " + nodeName + " is in use");
                }
            }
            nodes.remove(nodeName);
        }
        node.close();
    }

    /** A node that has another as a child, and the role the child has ("file", "backing", ...). */
    public record ParentEdge(BlockNode parent, String role) {}

    /** The first node of the graph (in order of opening) that has {@code node} as a direct child, if any. */
    public synchronized Optional<ParentEdge> parentOf(BlockNode node) {
        for (BlockNode parent : nodes.values()) {
            for (Map.Entry<String, BlockNode> child : parent.children().entrySet()) {
                if (child.getValue() == node) {
                    return Optional.of(new ParentEdge(parent, child.getKey()));
                }
            }
        }
        return Optional.empty();
    }

    /** Whether {@code child} is below {@code parent} (directly or through the parent's own children). */
    private static boolean uses(BlockNode parent, BlockNode child) {
        for (BlockNode c : parent.children().values()) {
            if (c == child || uses(c, child)) {
                return true;
            }
        }
        return false;
    }

    /** Closes every node, most recently opened first. */
    @Override
    public void close() throws IOException {
        List<BlockNode> all;
        synchronized (this) {
            all = new ArrayList<>(nodes.values());
            nodes.clear();
            drives.clear();
        }
        IOException failure = null;
        for (BlockNode n : all.reversed()) {
            try {
                n.close();
            } catch (IOException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }
}
