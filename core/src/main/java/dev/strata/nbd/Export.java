package dev.strata.nbd;

import dev.strata.block.BlockNode;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.nbd.NbdProtocol;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * One NBD export: a node offered under a name, read-only unless writable, with the bitmaps it
 * exports as {@code qemu:dirty-bitmap:NAME} contexts.
 *
 * <p>Invariants: the size and flags are fixed when the export is created (QEMU's export size is
 * the node's length rounded down to 512 bytes); every exported bitmap is held (busy) from
 * creation until {@link NbdServer} removes the export, so no command can clear, merge or remove
 * it while a backup tool reads it.
 *
 * <p>Concurrency: connections register and unregister from their own threads; the set is
 * concurrent, and {@code shuttingDown} stops new clients from choosing the export.
 */
public final class Export {
    // set at creation, never changed
    private final String id;
    private final String name;
    private final String description;
    private final BlockNode node;
    private final boolean writable;
    private final List<DirtyBitmap> bitmaps;
    private final boolean allocationDepth;
    private final boolean writethrough;
    private final long size;
    private final int flags;

    private final Set<Connection> connections = ConcurrentHashMap.newKeySet();
    private volatile boolean shuttingDown;

    Export(
            String id,
            String name,
            String description,
            BlockNode node,
            boolean writable,
            List<DirtyBitmap> bitmaps,
            boolean allocationDepth,
            boolean writethrough,
            long nodeLength,
            boolean multiConn) {
        this.id = id;
        this.name = name;
        this.description = description;
        this.node = node;
        this.writable = writable;
        this.bitmaps = List.copyOf(bitmaps);
        this.allocationDepth = allocationDepth;
        this.writethrough = writethrough;
        this.size = nodeLength & ~511L;
        int f = NbdProtocol.FLAG_HAS_FLAGS
                | NbdProtocol.FLAG_SEND_FLUSH
                | NbdProtocol.FLAG_SEND_FUA
                | NbdProtocol.FLAG_SEND_CACHE;
        if (multiConn) {
            f |= NbdProtocol.FLAG_CAN_MULTI_CONN;
        }
        if (writable) {
            f |= NbdProtocol.FLAG_SEND_TRIM | NbdProtocol.FLAG_SEND_WRITE_ZEROES | NbdProtocol.FLAG_SEND_FAST_ZERO;
        } else {
            f |= NbdProtocol.FLAG_READ_ONLY;
        }
        this.flags = f;
    }

    public String id() {
        return id;
    }

    public String name() {
        return name;
    }

    public String description() {
        return description;
    }

    public BlockNode node() {
        return node;
    }

    public boolean writable() {
        return writable;
    }

    /** Whether every write is flushed before its reply, as if the client had set FUA. */
    public boolean writethrough() {
        return writethrough;
    }

    public List<DirtyBitmap> bitmaps() {
        return bitmaps;
    }

    public long size() {
        return size;
    }

    /** Transmission flags before negotiation adds NBD_FLAG_SEND_DF. */
    public int flags() {
        return flags;
    }

    public boolean shuttingDown() {
        return shuttingDown;
    }

    void shutDown() {
        shuttingDown = true;
    }

    public int clientCount() {
        return connections.size();
    }

    void attach(Connection c) {
        connections.add(c);
    }

    void detach(Connection c) {
        connections.remove(c);
    }

    List<Connection> connections() {
        return new ArrayList<>(connections);
    }

    /** Every context this export offers, in QEMU's order (base, allocation depth, bitmaps). */
    List<MetaContext> contexts() {
        List<MetaContext> out = new ArrayList<>();
        out.add(new MetaContext.BaseAllocation(node));
        if (allocationDepth) {
            out.add(new MetaContext.AllocationDepth(node));
        }
        for (int i = 0; i < bitmaps.size(); i++) {
            out.add(new MetaContext.DirtyBitmapContext(
                    bitmaps.get(i), bitmaps.get(i).name(), i));
        }
        return out;
    }
}
