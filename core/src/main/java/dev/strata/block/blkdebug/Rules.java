package dev.strata.block.blkdebug;

import dev.strata.block.BlockException;
import dev.strata.block.BlockOptions;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * blkdebug's rule engine, with QEMU's semantics: the state starts at 1; when an event fires, every
 * rule for that event whose {@code state} matches the state at that moment runs (set-state rules
 * choose the next state, applied after all rules; the first inject rule to run clears the active
 * list, then every matching inject rule becomes active); the next request of a matching I/O type
 * (and sector, when the rule names one) fails with the rule's errno, and a {@code once} rule is
 * then removed for good.
 *
 * <p>{@code immediately} only changes when QEMU's coroutine returns the error; requests here are
 * synchronous, so it is accepted and has no effect.
 */
final class Rules {
    /** The request kinds a rule can fail (QAPI's BlkdebugIOType). */
    enum IoType {
        READ,
        WRITE,
        WRITE_ZEROES,
        DISCARD,
        FLUSH,
        BLOCK_STATUS;

        static IoType parse(String s) {
            for (IoType t : values()) {
                if (t.qapiName().equals(s)) {
                    return t;
                }
            }
            throw new IllegalArgumentException("Invalid parameter '" + s + "'");
        }

        String qapiName() {
            return name().toLowerCase(Locale.ROOT).replace('_', '-');
        }
    }

    /** QAPI's BlkdebugEvent: every name QEMU accepts (Strata's drivers fire a subset). */
    static final Set<String> EVENTS = Set.of(
            "l1_update",
            "l1_grow_alloc_table",
            "l1_grow_write_table",
            "l1_grow_activate_table",
            "l2_load",
            "l2_update",
            "l2_update_compressed",
            "l2_alloc_cow_read",
            "l2_alloc_write",
            "read_aio",
            "read_backing_aio",
            "read_compressed",
            "write_aio",
            "write_compressed",
            "vmstate_load",
            "vmstate_save",
            "cow_read",
            "cow_write",
            "reftable_load",
            "reftable_grow",
            "reftable_update",
            "refblock_load",
            "refblock_update",
            "refblock_update_part",
            "refblock_alloc",
            "refblock_alloc_hookup",
            "refblock_alloc_write",
            "refblock_alloc_write_blocks",
            "refblock_alloc_write_table",
            "refblock_alloc_switch_table",
            "cluster_alloc",
            "cluster_alloc_bytes",
            "cluster_free",
            "flush_to_os",
            "flush_to_disk",
            "pwritev_rmw_head",
            "pwritev_rmw_after_head",
            "pwritev_rmw_tail",
            "pwritev_rmw_after_tail",
            "pwritev",
            "pwritev_zero",
            "pwritev_done",
            "empty_image_prepare",
            "l1_shrink_write_table",
            "l1_shrink_free_l2_clusters",
            "cor_write",
            "cluster_alloc_space",
            "none");

    private static final long ANY = -1;
    private static final Set<IoType> DEFAULT_IOTYPES =
            Set.of(IoType.READ, IoType.WRITE, IoType.WRITE_ZEROES, IoType.DISCARD, IoType.FLUSH);

    private record Inject(String event, long state, Set<IoType> ioTypes, int errno, long sector, boolean once) {
        boolean matches(IoType type, long offset, long length) {
            if (!ioTypes.contains(type)) {
                return false;
            }
            if (sector == ANY) {
                return true;
            }
            // as QEMU: the request must contain the rule's first byte
            long start = sector * 512;
            return length > 0 && start >= offset && start < offset + length;
        }
    }

    private record SetState(String event, long state, long newState) {}

    private final List<Inject> injects;
    private final List<SetState> setStates;
    private final List<Inject> active = new ArrayList<>();
    private long state = 1;

    private Rules(List<Inject> injects, List<SetState> setStates) {
        this.injects = injects;
        this.setStates = setStates;
    }

    static Rules parse(BlockOptions options) {
        return parse(options, new BlkdebugConfig.Sections(List.of(), List.of()));
    }

    /** The rules of a config file (first) and of the options. */
    static Rules parse(BlockOptions options, BlkdebugConfig.Sections config) {
        List<Inject> injects = new ArrayList<>();
        List<BlockOptions> injectOptions = new ArrayList<>(config.injectErrors());
        injectOptions.addAll(list(options, "inject-error"));
        for (BlockOptions o : injectOptions) {
            String event = event(o);
            long state = o.number("state", ANY);
            Set<IoType> types = o.has("iotype") ? Set.of(IoType.parse(o.requireString("iotype"))) : DEFAULT_IOTYPES;
            long errno = o.number("errno", BlockException.EIO);
            long sector = o.number("sector", ANY);
            boolean once = o.bool("once", false);
            o.bool("immediately", false);
            rejectUnused(o, "inject-error");
            if (errno <= 0 || errno > 4095) {
                throw new IllegalArgumentException("Invalid parameter 'errno'");
            }
            injects.add(new Inject(event, state, types, (int) errno, sector, once));
        }
        List<SetState> setStates = new ArrayList<>();
        List<BlockOptions> setStateOptions = new ArrayList<>(config.setStates());
        setStateOptions.addAll(list(options, "set-state"));
        for (BlockOptions o : setStateOptions) {
            String event = event(o);
            long state = o.number("state", ANY);
            if (!o.has("new_state")) {
                throw new IllegalArgumentException("Parameter 'new_state' is missing");
            }
            long newState = o.number("new_state", 0);
            rejectUnused(o, "set-state");
            setStates.add(new SetState(event, state, newState));
        }
        return new Rules(injects, setStates);
    }

    private static String event(BlockOptions o) {
        String event = o.requireString("event");
        if (!EVENTS.contains(event)) {
            throw new IllegalArgumentException("Invalid parameter '" + event + "'");
        }
        return event;
    }

    private static void rejectUnused(BlockOptions o, String list) {
        List<String> unused = o.unusedKeys();
        if (!unused.isEmpty()) {
            throw new IllegalArgumentException("Invalid parameter '" + list + "." + unused.getFirst() + "'");
        }
    }

    /** A list option in the JSON form (a list of objects) or the dotted form (keys 0, 1, ...). */
    @SuppressWarnings("unchecked")
    private static List<BlockOptions> list(BlockOptions options, String key) {
        Object v = options.get(key);
        List<BlockOptions> out = new ArrayList<>();
        switch (v) {
            case null -> {}
            case List<?> l -> {
                for (Object item : l) {
                    if (!(item instanceof Map<?, ?> m)) {
                        throw new IllegalArgumentException(
                                "Invalid parameter type for '" + key + "', expected: object");
                    }
                    out.add(BlockOptions.fromMap((Map<String, ?>) m));
                }
            }
            case BlockOptions dotted -> {
                TreeMap<Integer, BlockOptions> byIndex = new TreeMap<>();
                for (String k : dotted.asMap().keySet()) {
                    int index;
                    try {
                        index = Integer.parseInt(k);
                    } catch (NumberFormatException e) {
                        throw new IllegalArgumentException("Invalid parameter '" + key + "." + k + "'");
                    }
                    BlockOptions item = dotted.child(k)
                            .orElseThrow(() -> new IllegalArgumentException(
                                    "Invalid parameter type for '" + key + "', expected: object"));
                    byIndex.put(index, item);
                }
                if (!byIndex.isEmpty() && (byIndex.firstKey() != 0 || byIndex.lastKey() != byIndex.size() - 1)) {
                    throw new IllegalArgumentException("Parameter '" + key + "' is missing an index");
                }
                out.addAll(byIndex.values());
            }
            default -> throw new IllegalArgumentException("Invalid parameter type for '" + key + "', expected: array");
        }
        return out;
    }

    /** An event fired by a parent driver on this node. */
    synchronized void event(String event) {
        long now = state;
        long next = now;
        boolean injected = false;
        for (SetState s : setStates) {
            if (s.event().equals(event) && (s.state() == ANY || s.state() == now)) {
                next = s.newState();
            }
        }
        for (Inject r : injects) {
            if (r.event().equals(event) && (r.state() == ANY || r.state() == now)) {
                if (!injected) {
                    active.clear();
                    injected = true;
                }
                active.addFirst(r);
            }
        }
        state = next;
    }

    /** Fails a request that an active rule matches, as QEMU's blkdebug does: with -errno. */
    void check(IoType type, long offset, long length) throws BlockException {
        Inject hit = null;
        synchronized (this) {
            if (active.isEmpty()) {
                return;
            }
            for (Inject r : active) {
                if (r.matches(type, offset, length)) {
                    hit = r;
                    break;
                }
            }
            if (hit == null) {
                return;
            }
            if (hit.once()) {
                active.remove(hit);
                injects.remove(hit);
            }
        }
        throw new BlockException(BlockException.strerror(hit.errno()), hit.errno());
    }
}
