package dev.strata.qmp.commands;

import dev.strata.block.blkdebug.BlkdebugDriver;
import dev.strata.qmp.schema.QType;
import dev.strata.qmp.schema.QType.AlternateType;
import dev.strata.qmp.schema.QType.Branch;
import dev.strata.qmp.schema.QType.Builtin;
import dev.strata.qmp.schema.QType.EnumType;
import dev.strata.qmp.schema.QType.IntType;
import dev.strata.qmp.schema.QType.JsonKind;
import dev.strata.qmp.schema.QType.Lazy;
import dev.strata.qmp.schema.QType.ListType;
import dev.strata.qmp.schema.QType.Member;
import dev.strata.qmp.schema.QType.Scalar;
import dev.strata.qmp.schema.QType.StructType;
import dev.strata.qmp.schema.QType.UnionType;
import dev.strata.qmp.schema.Qapi.IntKind;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * QAPI's BlockdevOptions for the drivers Strata has: the flat union on {@code driver} that
 * blockdev-add and {@code --blockdev} take, with QEMU's member names and types, so that input QEMU
 * accepts passes and input QEMU refuses is refused with QEMU's words.
 *
 * <p>The union is declared here rather than as records because its members are handed on as a map
 * to the block layer ({@link dev.strata.block.BlockOptions}), which opens the nodes. A member QEMU
 * declares but a Strata driver does not implement passes this check and is then refused by the
 * driver ("Block format 'file' does not support the option 'drop-cache'"). Members whose QAPI
 * types Strata does not model in detail ({@code overlap-check}, {@code encrypt}) are 'any' here.
 */
public final class BlockdevSchema {
    private static final QType STR = new Builtin(Scalar.STR);
    private static final QType BOOL = new Builtin(Scalar.BOOL);
    private static final QType ANY = new Builtin(Scalar.ANY);
    private static final QType INT = new IntType(IntKind.INT64);

    private final UnionType union;
    private final StructType createArguments;

    /** The union for a graph's drivers: {@code driver} accepts exactly those QEMU also knows. */
    public BlockdevSchema(Predicate<String> hasDriver) {
        QType target = new Lazy("BlockdevOptions", this::union);
        AlternateType ref = new AlternateType(
                "BlockdevRef",
                List.of(new Branch(JsonKind.OBJECT, target, v -> v), new Branch(JsonKind.STRING, STR, v -> v)));
        AlternateType refOrNull = new AlternateType(
                "BlockdevRefOrNull",
                List.of(
                        new Branch(JsonKind.OBJECT, target, v -> v),
                        new Branch(JsonKind.STRING, STR, v -> v),
                        new Branch(JsonKind.NULL, new Builtin(Scalar.NULL), v -> v)));
        List<String> drivers = new ArrayList<>();
        Map<String, StructType> variants = new LinkedHashMap<>();
        for (var e : variants(ref, refOrNull).entrySet()) {
            if (hasDriver.test(e.getKey())) {
                drivers.add(e.getKey());
                variants.put(e.getKey(), e.getValue());
            }
        }
        StructType base = struct(
                "BlockdevOptionsBase",
                required("driver", new EnumType("BlockdevDriver", List.copyOf(drivers), null)),
                optional("node-name", STR),
                optional("discard", enumOf("BlockdevDiscardOptions", "ignore", "unmap")),
                optional("cache", struct("BlockdevCacheOptions", optional("direct", BOOL), optional("no-flush", BOOL))),
                optional("read-only", BOOL),
                optional("auto-read-only", BOOL),
                optional("force-share", BOOL),
                optional("detect-zeroes", enumOf("BlockdevDetectZeroesOptions", "off", "on", "unmap")));
        this.union = new UnionType("BlockdevOptions", base, "driver", Map.copyOf(variants));
        this.createArguments = createArguments(ref, new EnumType("BlockdevDriver", List.copyOf(drivers), null));
    }

    /**
     * blockdev-create's arguments: {@code job-id} and BlockdevCreateOptions, the flat union on
     * {@code driver} whose {@code file} and {@code qcow2} branches Strata implements; every other
     * driver has an empty branch, so any member beyond {@code driver} is unexpected (as in QEMU,
     * whose raw has none either), and the command then refuses the driver.
     */
    private static StructType createArguments(QType ref, EnumType drivers) {
        QType size = new IntType(IntKind.SIZE);
        QType prealloc = enumOf("PreallocMode", "off", "metadata", "falloc", "full");
        Map<String, StructType> variants = new LinkedHashMap<>();
        variants.put(
                "file",
                struct(
                        "BlockdevCreateOptionsFile",
                        required("filename", STR),
                        required("size", size),
                        optional("preallocation", prealloc),
                        optional("nocow", BOOL),
                        optional("extent-size-hint", size)));
        variants.put(
                "qcow2",
                struct(
                        "BlockdevCreateOptionsQcow2",
                        required("file", ref),
                        optional("data-file", ref),
                        optional("data-file-raw", BOOL),
                        required("size", size),
                        optional("version", enumOf("BlockdevQcow2Version", "v2", "v3")),
                        optional("backing-file", STR),
                        optional("backing-fmt", drivers),
                        optional("encrypt", ANY),
                        optional("cluster-size", size),
                        optional("preallocation", prealloc),
                        optional("lazy-refcounts", BOOL),
                        optional("refcount-bits", INT),
                        optional("compression-type", enumOf("Qcow2CompressionType", "zlib", "zstd")),
                        optional("extended-l2", BOOL)));
        UnionType options = new UnionType(
                "BlockdevCreateOptions",
                struct("BlockdevCreateOptionsBase", required("driver", drivers)),
                "driver",
                Map.copyOf(variants));
        return struct("q_obj_blockdev-create-arg", required("job-id", STR), required("options", options));
    }

    /** blockdev-create's arguments. */
    public StructType createArguments() {
        return createArguments;
    }

    /** The BlockdevOptions union. */
    public UnionType union() {
        return union;
    }

    private static Member required(String name, QType type) {
        return new Member(name, type, false, null);
    }

    private static Member optional(String name, QType type) {
        return new Member(name, type, true, null);
    }

    private static QType enumOf(String name, String... values) {
        return new EnumType(name, List.of(values), null);
    }

    private static StructType struct(String name, Member... members) {
        return new StructType(name, List.of(members), null);
    }

    private static Map<String, StructType> variants(QType ref, QType refOrNull) {
        Map<String, StructType> v = new LinkedHashMap<>();
        v.put(
                "file",
                struct(
                        "BlockdevOptionsFile",
                        required("filename", STR),
                        optional("pr-manager", STR),
                        optional("locking", enumOf("OnOffAuto", "auto", "on", "off")),
                        optional("aio", enumOf("BlockdevAioOptions", "threads", "native", "io_uring")),
                        optional("aio-max-batch", INT),
                        optional("drop-cache", BOOL),
                        optional("x-check-cache-dropped", BOOL)));
        v.put(
                "null-co",
                struct(
                        "BlockdevOptionsNull",
                        optional("size", INT),
                        optional("latency-ns", new IntType(IntKind.UINT64)),
                        optional("read-zeroes", BOOL)));
        v.put(
                "qcow2",
                struct(
                        "BlockdevOptionsQcow2",
                        required("file", ref),
                        optional("backing", refOrNull),
                        optional("lazy-refcounts", BOOL),
                        optional("pass-discard-request", BOOL),
                        optional("pass-discard-snapshot", BOOL),
                        optional("pass-discard-other", BOOL),
                        optional("overlap-check", ANY),
                        optional("cache-size", INT),
                        optional("l2-cache-size", INT),
                        optional("l2-cache-entry-size", INT),
                        optional("refcount-cache-size", INT),
                        optional("cache-clean-interval", INT),
                        optional("encrypt", ANY),
                        optional("data-file", ref)));
        QType events = new EnumType("BlkdebugEvent", BlkdebugDriver.EVENTS, null);
        v.put(
                "blkdebug",
                struct(
                        "BlockdevOptionsBlkdebug",
                        required("image", ref),
                        optional("config", STR),
                        optional("align", INT),
                        optional("max-transfer", new IntType(IntKind.INT32)),
                        optional("opt-write-zero", new IntType(IntKind.INT32)),
                        optional("max-write-zero", new IntType(IntKind.INT32)),
                        optional("opt-discard", new IntType(IntKind.INT32)),
                        optional("max-discard", new IntType(IntKind.INT32)),
                        optional(
                                "inject-error",
                                new ListType(struct(
                                        "BlkdebugInjectErrorOptions",
                                        required("event", events),
                                        optional("state", INT),
                                        optional(
                                                "iotype",
                                                enumOf(
                                                        "BlkdebugIOType",
                                                        "read",
                                                        "write",
                                                        "write-zeroes",
                                                        "discard",
                                                        "flush",
                                                        "block-status")),
                                        optional("errno", INT),
                                        optional("sector", INT),
                                        optional("once", BOOL),
                                        optional("immediately", BOOL)))),
                        optional(
                                "set-state",
                                new ListType(struct(
                                        "BlkdebugSetStateOptions",
                                        required("event", events),
                                        optional("state", INT),
                                        required("new_state", INT)))),
                        optional("take-child-perms", ANY),
                        optional("unshare-child-perms", ANY)));
        v.put(
                "raw",
                struct("BlockdevOptionsRaw", required("file", ref), optional("offset", INT), optional("size", INT)));
        v.put(
                "copy-before-write",
                struct(
                        "BlockdevOptionsCbw",
                        required("file", ref),
                        required("target", ref),
                        optional("bitmap", struct("BlockDirtyBitmap", required("node", STR), required("name", STR))),
                        optional("on-cbw-error", enumOf("OnCbwError", "break-guest-write", "break-snapshot")),
                        optional("cbw-timeout", new IntType(IntKind.UINT32)),
                        optional("min-cluster-size", new IntType(IntKind.SIZE))));
        v.put("snapshot-access", struct("BlockdevOptionsGenericFormat", required("file", ref)));
        UnionType socketAddress = new UnionType(
                "SocketAddress",
                struct(
                        "q_obj_SocketAddress-base",
                        required("type", enumOf("SocketAddressType", "inet", "unix", "vsock", "fd"))),
                "type",
                Map.of(
                        "inet",
                        struct(
                                "InetSocketAddress",
                                required("host", STR),
                                required("port", STR),
                                optional("numeric", BOOL),
                                optional("to", new IntType(IntKind.UINT16)),
                                optional("ipv4", BOOL),
                                optional("ipv6", BOOL),
                                optional("keep-alive", BOOL),
                                optional("mptcp", BOOL)),
                        "unix",
                        struct(
                                "UnixSocketAddress",
                                required("path", STR),
                                optional("abstract", BOOL),
                                optional("tight", BOOL))));
        v.put(
                "nbd",
                struct(
                        "BlockdevOptionsNbd",
                        required("server", socketAddress),
                        optional("export", STR),
                        optional("tls-creds", STR),
                        optional("tls-hostname", STR),
                        optional("x-dirty-bitmap", STR),
                        optional("reconnect-delay", new IntType(IntKind.UINT32)),
                        optional("open-timeout", new IntType(IntKind.UINT32))));
        return v;
    }
}
