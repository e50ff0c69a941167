package dev.strata.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

/**
 * query-qmp-schema against qemu-storage-daemon 7.2's: every command Strata has that QEMU has takes
 * the same arguments (names, optional or not, and types: the built-in type, or array, enum,
 * alternate or object, one level of members deep), and the schema is whole (every type a command
 * names is described).
 */
class QmpSchemaTest extends QsdSandboxes {
    /**
     * Known differences, each with its reason: Strata declares block-export-add's NBD members
     * (name, description, bitmaps, allocation-depth) beside the common ones, where QEMU has them in
     * the nbd branch of the BlockExportOptions union on {@code type}.
     */
    private static final Set<String> KNOWN = Set.of("block-export-add");

    /** Members of later QEMU releases that Strata takes and 7.2 does not: discard-source is 9.1's. */
    private static final Map<String, Set<String>> NEWER =
            Map.of("drive-backup", Set.of("discard-source"), "blockdev-backup", Set.of("discard-source"));

    /** Commands Strata has and qemu-storage-daemon does not (qemu-system has human-monitor-command). */
    private static final Set<String> STRATA_ONLY = Set.of("human-monitor-command");

    @Test
    void everySharedCommandTakesTheArgumentsQemuDeclares() throws Exception {
        Interop.require("qemu-storage-daemon");
        qsd = QsdDifferentialTest.startQsd(List.of(), qemuDir);
        strata = QsdDifferentialTest.startStrata(List.of(), strataDir);
        Map<String, Map<String, Object>> qemu;
        Map<String, Map<String, Object>> mine;
        try (QmpClient q = QmpClient.connect(qemuDir.resolve("qmp.sock")).negotiate();
                QmpClient s = QmpClient.connect(strataDir.resolve("qmp.sock")).negotiate()) {
            qemu = byName(q.ok("query-qmp-schema", null));
            mine = byName(s.ok("query-qmp-schema", null));
        }
        List<String> commands = new ArrayList<>();
        for (var e : mine.entrySet()) {
            if (e.getValue().get("meta-type").equals("command")) {
                commands.add(e.getKey());
                for (String key : List.of("arg-type", "ret-type")) {
                    assertThat(mine).as("%s's %s is described", e.getKey(), key).containsKey((String)
                            e.getValue().get(key));
                }
            }
        }
        assertThat(commands).contains("query-qmp-schema", "blockdev-create", "blockdev-add", "drive-backup");
        int compared = 0;
        for (String c : commands) {
            if (!qemu.containsKey(c)) {
                assertThat(STRATA_ONLY)
                        .as("%s is a command qemu-storage-daemon 7.2 lacks", c)
                        .contains(c);
                continue;
            }
            if (KNOWN.contains(c)) {
                continue;
            }
            Object theirs = shape(qemu, (String) qemu.get(c).get("arg-type"), 0);
            Object ours = shape(mine, (String) mine.get(c).get("arg-type"), 0);
            if (ours instanceof Map<?, ?> members) {
                for (String newer : NEWER.getOrDefault(c, Set.of())) {
                    assertThat(members.containsKey(newer))
                            .as("%s takes %s", c, newer)
                            .isTrue();
                    members.remove(newer);
                }
            }
            assertThat(ours).as("arguments of %s", c).isEqualTo(theirs);
            compared++;
        }
        System.out.println("query-qmp-schema: " + compared + " commands take QEMU's arguments");
        assertThat(compared).isGreaterThan(35);
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Map<String, Object>> byName(Object schema) {
        Map<String, Map<String, Object>> out = new HashMap<>();
        for (Object o : (List<Object>) schema) {
            Map<String, Object> e = (Map<String, Object>) o;
            out.put((String) e.get("name"), e);
        }
        return out;
    }

    /** A type as a comparable value: built-in by name, others by meta-type, objects by their members. */
    @SuppressWarnings("unchecked")
    private static Object shape(Map<String, Map<String, Object>> schema, String type, int depth) {
        Map<String, Object> e = schema.get(type);
        String meta = (String) e.get("meta-type");
        return switch (meta) {
            case "builtin" -> type;
            case "array" -> List.of("array", shape(schema, (String) e.get("element-type"), depth));
            case "object" -> {
                if (depth > 0) {
                    yield "object";
                }
                Map<String, Object> members = new TreeMap<>();
                for (Object m : (List<Object>) e.get("members")) {
                    Map<String, Object> member = (Map<String, Object>) m;
                    members.put(
                            (String) member.get("name"),
                            List.of(
                                    member.containsKey("default"),
                                    shape(schema, (String) member.get("type"), depth + 1)));
                }
                yield members;
            }
            default -> meta;
        };
    }
}
