package dev.strata.nbd;

import dev.strata.block.BlockNode;
import dev.strata.block.BufferPool;
import dev.strata.block.dirty.BitmapException;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.block.dirty.DirtyBitmaps;
import dev.strata.block.nbd.NbdProtocol;
import dev.strata.net.PrivateUnixSocket;
import java.io.IOException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.StandardSocketOptions;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Semaphore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The daemon's NBD server: at most one listening socket (UNIX or TCP) and the table of exports,
 * with qemu-storage-daemon's rules and refusals for starting, stopping, adding and removing.
 *
 * <p>Concurrency: the QMP commands that call in here run one at a time, but clients connect and
 * leave on their own threads, so the export table is read under {@code this} and the connection
 * set is concurrent. A client's thread is a platform thread whose socket stays blocking: its
 * reads and replies go straight to the kernel, without the virtual threads' poller (see
 * {@link Transmission}). An accepted client takes one of {@code max-connections} slots
 * before the next accept, so further clients wait in the listen backlog as in QEMU.
 *
 * <p>Invariants: every export holds its bitmaps (busy) and counts as a user of its node from
 * {@link #addExport} until it is removed; stopping the server removes every export, as QEMU's
 * nbd-server-stop does.
 */
public final class NbdServer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(NbdServer.class);

    /** Where the server listens (QAPI's SocketAddress, the kinds Strata serves). */
    public sealed interface Address {}

    /** A UNIX socket; a stale file at the path is replaced, as QEMU does. */
    public record Unix(Path path) implements Address {}

    /** A TCP socket; {@code port} may be "0" for any free port. */
    public record Inet(String host, String port) implements Address {}

    /** A bitmap to export: by name on the node or its backing chain, or one already looked up. */
    public sealed interface BitmapRef {}

    public record NamedBitmap(String name) implements BitmapRef {}

    /** A bitmap named by node and name, looked up when the export's bitmaps are (QEMU's order). */
    public record NodeBitmap(BitmapLookup lookup) implements BitmapRef {}

    /** Finds a bitmap or refuses with QEMU's words. */
    @FunctionalInterface
    public interface BitmapLookup {
        DirtyBitmap lookup() throws NbdException;
    }

    /** What block-export-add asks for, the node already looked up. */
    public record ExportSpec(
            String id,
            BlockNode node,
            String name,
            String description,
            boolean writable,
            List<BitmapRef> bitmaps,
            boolean allocationDepth,
            boolean writethrough) {}

    // guarded by this
    private ServerSocketChannel listener;
    private SocketAddress bound;
    private Address address;
    private Semaphore slots;
    private Thread acceptor;
    private boolean multiConn;
    private final Map<String, Export> exports = new LinkedHashMap<>();

    /** Request buffers shared by all clients: at most 64 idle, 256 MiB in all. */
    private final BufferPool buffers = new BufferPool(64, 256L << 20);

    private final Set<Connection> connections = ConcurrentHashMap.newKeySet();
    private final Map<Connection, Thread> threads = new ConcurrentHashMap<>();

    private final Handshake.Exports lookup = new Handshake.Exports() {
        @Override
        public Export find(String name) {
            synchronized (NbdServer.this) {
                for (Export e : exports.values()) {
                    if (e.name().equals(name) && !e.shuttingDown()) {
                        return e;
                    }
                }
                return null;
            }
        }

        @Override
        public List<Export> list() {
            synchronized (NbdServer.this) {
                return exports.values().stream().filter(e -> !e.shuttingDown()).toList();
            }
        }
    };

    public synchronized boolean running() {
        return listener != null;
    }

    /** The address actually bound (a TCP port of "0" resolved), or empty when not running. */
    public synchronized Optional<SocketAddress> boundAddress() {
        return Optional.ofNullable(bound);
    }

    /** nbd-server-start: listens and serves; {@code maxConnections} 0 means no limit. */
    public synchronized void start(Address addr, long maxConnections) throws NbdException {
        if (listener != null) {
            throw new NbdException("NBD server already running");
        }
        ServerSocketChannel server = switch (addr) {
            case Unix(Path path) -> {
                try {
                    // 0600 as the QMP socket: a client of this socket reads and writes the disks
                    yield PrivateUnixSocket.bind(path.toAbsolutePath());
                } catch (IOException e) {
                    throw new NbdException("Failed to bind socket to " + path + ": " + reason(e));
                }
            }
            case Inet(String host, String port) -> {
                int p = parsePort(host, port);
                try {
                    // exactly the address named: an IPv4 address gets an IPv4 socket (a dual-stack
                    // socket would make 0.0.0.0 the IPv6 wildcard, every address of the host)
                    InetAddress ip = InetAddress.getByName(host);
                    ServerSocketChannel s = ServerSocketChannel.open(
                            ip instanceof Inet4Address ? StandardProtocolFamily.INET : StandardProtocolFamily.INET6);
                    try {
                        s.setOption(StandardSocketOptions.SO_REUSEADDR, true);
                        s.bind(new InetSocketAddress(ip, p));
                    } catch (IOException e) {
                        s.close();
                        throw e;
                    }
                    yield s;
                } catch (IOException e) {
                    throw new NbdException("Failed to bind socket: " + reason(e));
                }
            }
        };
        listener = server;
        address = addr;
        try {
            // a UNIX socket was bound under a private staging name and renamed: its address is the path
            bound = addr instanceof Unix(Path path)
                    ? UnixDomainSocketAddress.of(path.toAbsolutePath())
                    : server.getLocalAddress();
        } catch (IOException e) {
            bound = null;
        }
        slots = maxConnections > 0 ? new Semaphore((int) Math.min(maxConnections, Integer.MAX_VALUE)) : null;
        multiConn = maxConnections != 1;
        Semaphore s = slots;
        acceptor = Thread.ofVirtual().name("nbd-accept").start(() -> accept(server, s));
    }

    private static int parsePort(String host, String port) throws NbdException {
        try {
            int p = Integer.parseInt(port);
            if (p < 0 || p > 65535) {
                throw new NumberFormatException();
            }
            return p;
        } catch (NumberFormatException e) {
            throw new NbdException(
                    "address resolution failed for " + host + ":" + port + ": Servname not supported for ai_socktype");
        }
    }

    /** The C library's words for the common failures, as QEMU prints them. */
    private static String reason(IOException e) {
        if (e instanceof java.nio.file.NoSuchFileException) {
            return "No such file or directory";
        }
        if (e instanceof java.nio.file.AccessDeniedException) {
            return "Permission denied";
        }
        String m = e.getMessage();
        return m == null ? e.toString() : m;
    }

    private void accept(ServerSocketChannel server, Semaphore s) {
        while (server.isOpen()) {
            try {
                if (s != null) {
                    s.acquire();
                }
                SocketChannel ch;
                try {
                    ch = server.accept();
                } catch (IOException e) {
                    if (s != null) {
                        s.release();
                    }
                    throw e;
                }
                if (ch.getRemoteAddress() instanceof InetSocketAddress) {
                    ch.setOption(StandardSocketOptions.TCP_NODELAY, true);
                }
                Connection[] self = new Connection[1];
                self[0] = new Connection(ch, lookup, buffers, () -> {
                    connections.remove(self[0]);
                    threads.remove(self[0]);
                    if (s != null) {
                        s.release();
                    }
                });
                connections.add(self[0]);
                threads.put(
                        self[0], Thread.ofPlatform().daemon().name("nbd-client").start(self[0]));
            } catch (InterruptedException e) {
                return;
            } catch (IOException e) {
                if (server.isOpen()) {
                    LOG.warn("NBD accept failed: {}", e.toString());
                } else {
                    return;
                }
            }
        }
    }

    /** nbd-server-stop: the socket closed, then every export removed (clients dropped). */
    public List<Export> stop() throws NbdException {
        ServerSocketChannel server;
        Thread accepting;
        Address addr;
        List<String> ids;
        synchronized (this) {
            if (listener == null) {
                throw new NbdException("NBD server not running");
            }
            ids = List.copyOf(exports.keySet());
            server = listener;
            accepting = acceptor;
            addr = address;
            listener = null;
            bound = null;
            address = null;
            acceptor = null;
        }
        try {
            server.close();
        } catch (IOException e) {
            LOG.warn("closing NBD socket: {}", e.toString());
        }
        accepting.interrupt();
        List<Export> removed = new ArrayList<>();
        for (String id : ids) {
            try {
                removed.add(removeExport(id, true));
            } catch (NbdException e) {
                LOG.debug("export {} went meanwhile: {}", id, e.getMessage());
            }
        }
        for (Connection c : connections) {
            c.close();
        }
        awaitEnd(List.copyOf(threads.values()));
        if (addr instanceof Unix(Path path)) {
            try {
                Files.deleteIfExists(path);
            } catch (IOException e) {
                LOG.debug("removing NBD socket {}: {}", path, e.toString());
            }
        }
        return removed;
    }

    /** Refuses an export id QEMU would refuse, before the node is looked up (QEMU's order). */
    public synchronized void checkNewId(String id) throws NbdException {
        if (!ExportChecks.wellFormed(id)) {
            throw new NbdException("Invalid block export id");
        }
        if (exports.containsKey(id)) {
            throw new NbdException("Block export id '" + id + "' is already in use");
        }
    }

    /** block-export-add for type nbd, after the id and node checks. */
    public synchronized Export addExport(ExportSpec spec) throws NbdException {
        checkNewId(spec.id());
        BlockNode node = spec.node();
        if (spec.writable() && node.readOnly()) {
            throw new NbdException("Cannot export read-only node as writable");
        }
        if (listener == null) {
            throw new NbdException("NBD server not running");
        }
        String name = spec.name() != null ? spec.name() : node.nodeName();
        if (name.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > NbdProtocol.MAX_STRING) {
            throw new NbdException("export name '" + name + "' too long");
        }
        String desc = spec.description();
        if (desc != null && desc.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > NbdProtocol.MAX_STRING) {
            throw new NbdException("description '" + desc + "' too long");
        }
        for (Export e : exports.values()) {
            if (e.name().equals(name)) {
                throw new NbdException("NBD server already has export named '" + name + "'");
            }
        }
        long length;
        try {
            length = node.length();
        } catch (IOException e) {
            throw new NbdException("Failed to determine the NBD export's length");
        }
        List<DirtyBitmap> bitmaps = new ArrayList<>();
        for (BitmapRef ref : spec.bitmaps()) {
            DirtyBitmap b = switch (ref) {
                case NodeBitmap(BitmapLookup l) -> l.lookup();
                case NamedBitmap(String bitmapName) -> ExportChecks.findOnChain(node, bitmapName, spec.writable());
            };
            try {
                DirtyBitmaps.check(b, DirtyBitmaps.Check.ALLOW_RO);
            } catch (BitmapException e) {
                throw new NbdException(e.getMessage());
            }
            bitmaps.add(b);
        }
        List<DirtyBitmap> held = new ArrayList<>();
        try {
            for (DirtyBitmap b : bitmaps) {
                ExportChecks.ownerOf(node, b).bitmaps().hold(b);
                held.add(b);
            }
        } catch (BitmapException e) {
            for (DirtyBitmap b : held) {
                ExportChecks.ownerOf(node, b).bitmaps().unhold(b);
            }
            throw new NbdException(e.getMessage());
        }
        Export export = new Export(
                spec.id(),
                name,
                desc,
                node,
                spec.writable(),
                bitmaps,
                spec.allocationDepth(),
                spec.writethrough(),
                length,
                multiConn);
        node.attachUser();
        exports.put(spec.id(), export);
        return export;
    }

    /**
     * block-export-del: refused in safe mode while clients are connected; in hard mode they are
     * dropped. Returns once the export is gone, its bitmaps released.
     */
    public Export removeExport(String id, boolean hard) throws NbdException {
        Export e;
        synchronized (this) {
            e = exports.get(id);
            if (e == null) {
                throw new NbdException("Export '" + id + "' is not found");
            }
            if (e.shuttingDown()) {
                throw new NbdException("Export '" + id + "' is already shutting down");
            }
            if (!hard && e.clientCount() > 0) {
                throw new NbdException("export '" + id + "' still in use");
            }
            e.shutDown();
        }
        List<Thread> waitFor = new ArrayList<>();
        for (Connection c : e.connections()) {
            c.close();
            Thread t = threads.get(c);
            if (t != null) {
                waitFor.add(t);
            }
        }
        awaitEnd(waitFor);
        synchronized (this) {
            exports.remove(id);
        }
        for (DirtyBitmap b : e.bitmaps()) {
            ExportChecks.ownerOf(e.node(), b).bitmaps().unhold(b);
        }
        e.node().detachUser();
        return e;
    }

    private static void awaitEnd(List<Thread> waitFor) {
        for (Thread t : waitFor) {
            try {
                if (!t.join(java.time.Duration.ofSeconds(30))) {
                    LOG.warn("NBD connection {} did not end in time", t);
                }
            } catch (InterruptedException ex) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    public synchronized List<Export> exports() {
        return List.copyOf(exports.values());
    }

    public synchronized Optional<Export> export(String id) {
        return Optional.ofNullable(exports.get(id));
    }

    /** Connected clients, in the handshake or past it. */
    public int clientCount() {
        return connections.size();
    }

    /** Stops the server if it runs (daemon shutdown). */
    @Override
    public void close() {
        try {
            if (running()) {
                stop();
            }
        } catch (NbdException e) {
            LOG.debug("NBD server already stopped: {}", e.getMessage());
        }
    }
}
