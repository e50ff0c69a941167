package dev.strata.qmp.commands;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.nbd.Export;
import dev.strata.nbd.NbdException;
import dev.strata.nbd.NbdServer;
import dev.strata.qmp.Commands;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.commands.BitmapCommands.BlockDirtyBitmap;
import dev.strata.qmp.commands.BitmapCommands.BlockDirtyBitmapOrStr;
import dev.strata.qmp.commands.BitmapCommands.LocalBitmap;
import dev.strata.qmp.schema.QType;
import dev.strata.qmp.schema.QType.EnumType;
import dev.strata.qmp.schema.QType.Member;
import dev.strata.qmp.schema.QType.StructType;
import dev.strata.qmp.schema.Qapi;
import dev.strata.qmp.schema.Schema;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.BiConsumer;

/**
 * The NBD server and export commands of qemu-storage-daemon: nbd-server-start/-stop,
 * block-export-add/-del, query-block-exports and the deprecated nbd-server-add/-remove, checked
 * in QEMU's order with QEMU's texts; the rules live in {@link NbdServer}.
 */
public final class NbdCommands {
    private NbdCommands() {}

    /** QAPI's BlockExportType (the kinds Strata serves). */
    public enum BlockExportType {
        NBD
    }

    /** QAPI's BlockExportRemoveMode. */
    public enum BlockExportRemoveMode {
        SAFE,
        HARD
    }

    /** QAPI's BlockExportOptions for type nbd (base members, then BlockExportOptionsNbd's). */
    public record BlockExportOptions(
            BlockExportType type,
            String id,
            @Qapi.Optional Boolean fixedIothread,
            @Qapi.Optional String iothread,
            String nodeName,
            @Qapi.Optional Boolean writable,
            @Qapi.Optional Boolean writethrough,
            @Qapi.Optional String name,
            @Qapi.Optional String description,
            @Qapi.Optional List<BlockDirtyBitmapOrStr> bitmaps,
            @Qapi.Optional Boolean allocationDepth) {}

    /** Arguments of block-export-del. */
    public record BlockExportDelArguments(
            String id, @Qapi.Optional BlockExportRemoveMode mode) {}

    /** QAPI's BlockExportInfo. */
    public record BlockExportInfo(BlockExportType type, String id, String nodeName, boolean shuttingDown) {}

    /** QAPI's NbdServerAddOptions (nbd-server-add, deprecated since 5.2). */
    public record NbdServerAddOptions(
            String device,
            @Qapi.Optional String name,
            @Qapi.Optional String description,
            @Qapi.Optional Boolean writable,
            @Qapi.Optional String bitmap) {}

    /** Arguments of nbd-server-remove. */
    public record NbdServerRemoveArguments(
            String name, @Qapi.Optional BlockExportRemoveMode mode) {}

    /**
     * QAPI's InetSocketAddress. QEMU requires {@code host}; Strata takes its absence to mean the
     * loopback address, so that a server is never reachable from other machines by accident.
     */
    public record InetSocketAddress(
            @Qapi.Optional String host,
            String port,
            @Qapi.Optional Boolean numeric,
            @Qapi.Optional @Qapi.Int(Qapi.IntKind.UINT16) Long to,
            @Qapi.Optional Boolean ipv4,
            @Qapi.Optional Boolean ipv6,
            @Qapi.Optional Boolean keepAlive) {}

    /** QAPI's UnixSocketAddress. */
    public record UnixSocketAddress(
            String path,
            @Qapi.Optional @Qapi.Name("abstract") Boolean isAbstract,
            @Qapi.Optional Boolean tight) {}

    /** QAPI's VsockSocketAddress. */
    public record VsockSocketAddress(String cid, String port) {}

    /** QAPI's String (the fd branch). */
    @Qapi.Name("String")
    public record StringValue(String str) {}

    public record InetSocketAddressWrapper(InetSocketAddress data) {}

    public record UnixSocketAddressWrapper(UnixSocketAddress data) {}

    public record VsockSocketAddressWrapper(VsockSocketAddress data) {}

    public record StringWrapper(StringValue data) {}

    /** nbd-server-start's arguments: {@code addr} is the legacy union {type, data}. */
    static StructType serverStartArguments() {
        return serverStruct(
                "q_obj_nbd-server-start-arg",
                "SocketAddressLegacy",
                "SocketAddressLegacyBase",
                Map.of(
                        "inet", Schema.struct(InetSocketAddressWrapper.class),
                        "unix", Schema.struct(UnixSocketAddressWrapper.class),
                        "vsock", Schema.struct(VsockSocketAddressWrapper.class),
                        "fd", Schema.struct(StringWrapper.class)));
    }

    /** qemu-storage-daemon's NbdServerOptions ({@code --nbd-server}): addr is the flat SocketAddress. */
    public static StructType serverOptions() {
        return serverStruct(
                "NbdServerOptions",
                "SocketAddress",
                "SocketAddressBase",
                Map.of(
                        "inet", Schema.struct(InetSocketAddress.class),
                        "unix", Schema.struct(UnixSocketAddress.class),
                        "vsock", Schema.struct(VsockSocketAddress.class),
                        "fd", Schema.struct(StringValue.class)));
    }

    /** The NBD server's options around an {@code addr} union of the given shape. */
    private static StructType serverStruct(
            String name, String unionName, String baseName, Map<String, StructType> addressVariants) {
        StructType base = new StructType(
                baseName,
                List.of(new Member(
                        "type",
                        new EnumType("SocketAddressType", List.of("inet", "unix", "vsock", "fd"), null),
                        false,
                        null)),
                null);
        QType addr = new QType.UnionType(unionName, base, "type", addressVariants);
        QType str = new QType.Builtin(QType.Scalar.STR);
        return new StructType(
                name,
                List.of(
                        new Member("addr", addr, false, null),
                        new Member("tls-creds", str, true, null),
                        new Member("tls-authz", str, true, null),
                        new Member("max-connections", new QType.IntType(Qapi.IntKind.UINT32), true, null)),
                null);
    }

    /**
     * Declares the commands on {@code server}; {@code events} sends a QMP event (name, data) to
     * every monitor. BLOCK_EXPORT_DELETED goes out before the reply of the command that removed
     * the export, as qemu-storage-daemon 7.2 sends it.
     */
    public static void register(
            Commands commands, BlockGraph graph, NbdServer server, BiConsumer<String, Object> events) {
        Nodes nodes = new Nodes(graph);
        commands.addBoxed("nbd-server-start", serverStartArguments(), "{}", (a, ctx) -> {
            start(server, a);
            return null;
        });
        commands.add("nbd-server-stop", Commands.NoArguments.class, "{}", (a, ctx) -> {
            call(server::stop).forEach(e -> deleted(events, e));
            return null;
        });
        commands.add("block-export-add", BlockExportOptions.class, "{}", (a, ctx) -> {
            addExport(nodes, server, a);
            return null;
        });
        commands.add("block-export-del", BlockExportDelArguments.class, "{}", (a, ctx) -> {
            deleted(events, call(() -> server.removeExport(a.id(), a.mode() == BlockExportRemoveMode.HARD)));
            return null;
        });
        commands.add(
                "query-block-exports",
                "[BlockExportInfo]",
                // newest first, as QEMU lists them
                () -> server.exports().reversed().stream()
                        .map(e -> new BlockExportInfo(
                                BlockExportType.NBD, e.id(), e.node().nodeName(), e.shuttingDown()))
                        .toList());
        commands.add("nbd-server-add", NbdServerAddOptions.class, "{}", (a, ctx) -> {
            if (!server.running()) {
                throw new QmpException("NBD server not running");
            }
            String name = a.name() != null ? a.name() : a.device();
            BlockNode node = nodes.lookupDeviceOrNode(a.device());
            // nbd-server-add exports a read-only node read-only instead of refusing
            boolean writable = Boolean.TRUE.equals(a.writable()) && !node.readOnly();
            List<BlockDirtyBitmapOrStr> bitmaps = a.bitmap() == null ? List.of() : List.of(new LocalBitmap(a.bitmap()));
            addExport(
                    nodes,
                    server,
                    new BlockExportOptions(
                            BlockExportType.NBD,
                            name,
                            null,
                            null,
                            node.nodeName(),
                            writable,
                            null,
                            name,
                            a.description(),
                            bitmaps,
                            null));
            return null;
        });
        commands.add("nbd-server-remove", NbdServerRemoveArguments.class, "{}", (a, ctx) -> {
            deleted(events, call(() -> server.removeExport(a.name(), a.mode() == BlockExportRemoveMode.HARD)));
            return null;
        });
    }

    private static void deleted(BiConsumer<String, Object> events, Export e) {
        events.accept("BLOCK_EXPORT_DELETED", Map.of("id", e.id()));
    }

    /** The host to bind, loopback when none is given. */
    public static String hostOrLoopback(String host) {
        return host == null ? "127.0.0.1" : host;
    }

    /** An NbdServer call that may refuse with QEMU's words. */
    @FunctionalInterface
    private interface NbdCall<T> {
        T run() throws NbdException;
    }

    private static <T> T call(NbdCall<T> action) throws QmpException {
        try {
            return action.run();
        } catch (NbdException e) {
            throw new QmpException(e.getMessage());
        }
    }

    @SuppressWarnings("unchecked")
    private static void start(NbdServer server, Map<String, Object> a) throws QmpException {
        Map<String, Object> addr = (Map<String, Object>) a.get("addr");
        NbdServer.Address address = switch (addr.get("data")) {
            case InetSocketAddress inet -> new NbdServer.Inet(hostOrLoopback(inet.host()), inet.port());
            case UnixSocketAddress unix -> {
                if (Boolean.TRUE.equals(unix.isAbstract())) {
                    throw new QmpException("Strata does not serve NBD on abstract UNIX sockets");
                }
                yield new NbdServer.Unix(java.nio.file.Path.of(unix.path()));
            }
            default -> throw new QmpException("Strata serves NBD on inet and unix sockets only");
        };
        if (a.get("tls-creds") instanceof String creds) {
            throw new QmpException("No TLS credentials with id '" + creds + "'");
        }
        long max = a.get("max-connections") instanceof Number n ? n.longValue() : 100;
        call(() -> {
            server.start(address, max);
            return null;
        });
    }

    /** block-export-add, for the daemon's {@code --export} as well. */
    public static void addExport(BlockGraph graph, NbdServer server, BlockExportOptions a) throws QmpException {
        addExport(new Nodes(graph), server, a);
    }

    private static void addExport(Nodes nodes, NbdServer server, BlockExportOptions a) throws QmpException {
        call(() -> {
            server.checkNewId(a.id());
            return null;
        });
        BlockNode node = nodes.find(a.nodeName());
        if (node == null) {
            throw new QmpException("Cannot find device='' nor node-name='" + a.nodeName() + "'");
        }
        if (a.iothread() != null) {
            throw new QmpException("Strata has no iothreads: cannot use iothread '" + a.iothread() + "'");
        }
        List<NbdServer.BitmapRef> refs = new ArrayList<>();
        if (a.bitmaps() != null) {
            for (BlockDirtyBitmapOrStr b : a.bitmaps()) {
                refs.add(
                        switch (b) {
                            case LocalBitmap l -> new NbdServer.NamedBitmap(l.name());
                            case BlockDirtyBitmap d ->
                                new NbdServer.NodeBitmap(() -> {
                                    try {
                                        return nodes.lookupBitmap(d.node(), d.name());
                                    } catch (QmpException e) {
                                        throw new NbdException(e.desc());
                                    }
                                });
                        });
            }
        }
        call(() -> server.addExport(new NbdServer.ExportSpec(
                a.id(),
                node,
                a.name(),
                a.description(),
                Boolean.TRUE.equals(a.writable()),
                refs,
                Boolean.TRUE.equals(a.allocationDepth()),
                Boolean.TRUE.equals(a.writethrough()))));
    }
}
