package dev.strata.qmp.schema;

import dev.strata.qmp.schema.QType.AlternateType;
import dev.strata.qmp.schema.QType.Branch;
import dev.strata.qmp.schema.QType.Builtin;
import dev.strata.qmp.schema.QType.EnumType;
import dev.strata.qmp.schema.QType.IntType;
import dev.strata.qmp.schema.QType.Lazy;
import dev.strata.qmp.schema.QType.ListType;
import dev.strata.qmp.schema.QType.Member;
import dev.strata.qmp.schema.QType.StructType;
import dev.strata.qmp.schema.QType.UnionType;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * query-qmp-schema's SchemaInfo list, made from the same types that check the commands'
 * arguments, so the schema a client probes is the one the daemon enforces. As QEMU does, every
 * type but the built-in ones is named by a number that carries no meaning (clients must not rely
 * on QAPI's type names); an optional member has {@code "default": null}; a flat union is an object
 * with its base members, {@code tag} and a variant per branch that has members.
 *
 * <p>Results are described by their command only: a command with a result has {@code ret-type}
 * "any" (the records that encode results are not declared with the command); one without has the
 * empty object QEMU gives it.
 */
public final class Introspection {
    /** One command to describe: its name, its argument type and whether it returns anything. */
    public record CommandEntry(String name, QType arguments, boolean returnsValue, boolean allowOob) {}

    private final List<Map<String, Object>> entries = new ArrayList<>();
    private final Map<Object, String> names = new IdentityHashMap<>();
    private final Map<String, String> builtins = new LinkedHashMap<>();
    private int next;

    private Introspection() {}

    /** The SchemaInfo entries for {@code commands}: the commands first, then every type they use. */
    public static List<Map<String, Object>> describe(List<CommandEntry> commands) {
        Introspection i = new Introspection();
        List<Map<String, Object>> out = new ArrayList<>();
        String empty = null;
        for (CommandEntry c : commands) {
            Map<String, Object> e = new LinkedHashMap<>();
            e.put("name", c.name());
            e.put("meta-type", "command");
            e.put("arg-type", i.type(c.arguments()));
            if (c.returnsValue()) {
                e.put("ret-type", i.type(new Builtin(QType.Scalar.ANY)));
            } else {
                if (empty == null) {
                    empty = i.type(new StructType("", List.of(), null));
                }
                e.put("ret-type", empty);
            }
            if (c.allowOob()) {
                e.put("allow-oob", true);
            }
            out.add(e);
        }
        out.addAll(i.entries);
        return out;
    }

    /** The name a type has in the schema, describing it (and what it uses) the first time. */
    private String type(QType t) {
        return switch (t) {
            case Lazy lazy -> type(lazy.target().get());
            case Builtin b -> builtin(b.name(), jsonType(b.scalar()));
            // QEMU's introspection names every integer type "int": the ranges are not part of it
            case IntType n -> builtin("int", "int");
            case ListType l -> {
                String element = type(l.element());
                String name = "[" + element + "]";
                if (!builtins.containsKey(name)) {
                    builtins.put(name, name);
                    Map<String, Object> e = entry(name, "array");
                    e.put("element-type", element);
                    entries.add(e);
                }
                yield name;
            }
            case EnumType en ->
                named(en, e -> {
                    e.put("meta-type", "enum");
                    e.put("values", en.values());
                    List<Map<String, Object>> members = new ArrayList<>();
                    for (String v : en.values()) {
                        members.add(Map.of("name", v));
                    }
                    e.put("members", members);
                });
            case StructType s ->
                named(s, e -> {
                    e.put("meta-type", "object");
                    e.put("members", members(s.members()));
                });
            case UnionType u ->
                named(u, e -> {
                    e.put("meta-type", "object");
                    e.put("members", members(u.base().members()));
                    e.put("tag", u.discriminator());
                    List<Map<String, Object>> variants = new ArrayList<>();
                    for (var v : u.variants().entrySet()) {
                        if (!v.getValue().members().isEmpty()) {
                            Map<String, Object> variant = new LinkedHashMap<>();
                            variant.put("case", v.getKey());
                            variant.put("type", type(v.getValue()));
                            variants.add(variant);
                        }
                    }
                    e.put("variants", variants);
                });
            case AlternateType a ->
                named(a, e -> {
                    e.put("meta-type", "alternate");
                    List<Map<String, Object>> members = new ArrayList<>();
                    for (Branch b : a.branches()) {
                        members.add(Map.of("type", type(b.type())));
                    }
                    e.put("members", members);
                });
        };
    }

    private interface Describer {
        void describe(Map<String, Object> entry);
    }

    /** A non-built-in type: numbered on first sight, its entry filled once (recursion-safe). */
    private String named(Object key, Describer describer) {
        String existing = names.get(key);
        if (existing != null) {
            return existing;
        }
        String name = Integer.toString(next++);
        names.put(key, name);
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("name", name);
        entries.add(e);
        describer.describe(e);
        return name;
    }

    private List<Map<String, Object>> members(List<Member> members) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (Member m : members) {
            Map<String, Object> e = new LinkedHashMap<>();
            e.put("name", m.name());
            e.put("type", type(m.type()));
            if (m.optional()) {
                e.put("default", null);
            }
            out.add(e);
        }
        return out;
    }

    private String builtin(String name, String jsonType) {
        if (!builtins.containsKey(name)) {
            builtins.put(name, name);
            Map<String, Object> e = entry(name, "builtin");
            e.put("json-type", jsonType);
            entries.add(e);
        }
        return name;
    }

    private static Map<String, Object> entry(String name, String metaType) {
        Map<String, Object> e = new LinkedHashMap<>();
        e.put("name", name);
        e.put("meta-type", metaType);
        return e;
    }

    private static String jsonType(QType.Scalar s) {
        return switch (s) {
            case STR -> "string";
            case BOOL -> "boolean";
            case NUMBER -> "number";
            case NULL -> "null";
            case ANY -> "value";
        };
    }
}
