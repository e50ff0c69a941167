package dev.strata.qmp.schema;

import dev.strata.json.Json;
import dev.strata.qmp.schema.QType.AlternateType;
import dev.strata.qmp.schema.QType.Branch;
import dev.strata.qmp.schema.QType.Builtin;
import dev.strata.qmp.schema.QType.EnumType;
import dev.strata.qmp.schema.QType.IntType;
import dev.strata.qmp.schema.QType.JsonKind;
import dev.strata.qmp.schema.QType.Lazy;
import dev.strata.qmp.schema.QType.ListType;
import dev.strata.qmp.schema.QType.Member;
import dev.strata.qmp.schema.QType.StructType;
import dev.strata.qmp.schema.QType.UnionType;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Checks a parsed JSON value against a declared type and builds the Java value, failing with the
 * message QEMU's QAPI input visitor gives for the same input.
 *
 * <p>Order, as in QEMU: a struct's members are visited in declaration order (a missing or mistyped
 * member fails there, nested ones first), and keys the struct does not declare are refused only
 * after all declared members passed. Paths are dotted ({@code file.filename}) with list indexes
 * ({@code bitmaps[0].name}). The messages QEMU gives about integer ranges name the bare member
 * ({@code "Parameter 'granularity' expects uint32_t"}), and Strata keeps that quirk.
 *
 * <p>Two modes: {@link Mode#JSON} for QMP, and {@link Mode#KEYVAL} for command-line options
 * ({@code --blockdev driver=file,read-only=on}), where every scalar arrives as a string and is
 * converted to the declared type, as QEMU's keyval visitor does.
 */
public final class Decoder {
    /** How scalars arrive. */
    public enum Mode {
        JSON,
        KEYVAL
    }

    private static final BigInteger TWO_64 = BigInteger.ONE.shiftLeft(64);

    private final Mode mode;

    private Decoder(Mode mode) {
        this.mode = mode;
    }

    /** Decodes the members of a command's {@code arguments} object. */
    public static Object decodeArguments(QType type, Map<String, Object> arguments, Mode mode) throws SchemaException {
        return new Decoder(mode).value(type, arguments, "", null);
    }

    static Object decodeDefault(QType type, String json) throws SchemaException {
        Object parsed;
        try {
            parsed = Json.parse(json);
        } catch (IllegalArgumentException e) {
            throw new SchemaException(e.getMessage());
        }
        return new Decoder(Mode.JSON).value(type, parsed, "default", "default");
    }

    /**
     * @param path the full dotted path of the value ("" for a command's whole arguments)
     * @param bare the member's own name (null inside lists), for QEMU's range messages
     */
    private Object value(QType type, Object json, String path, String bare) throws SchemaException {
        return switch (type) {
            case Builtin b -> builtin(b, json, path);
            case IntType i -> integer(i.kind(), json, path, bare);
            case EnumType e -> enumValue(e, json, path, bare);
            case ListType l -> list(l, json, path);
            case StructType s -> struct(s, json, path);
            case AlternateType a -> alternate(a, json, path);
            case UnionType u -> union(u, json, path);
            case Lazy l -> value(l.target().get(), json, path, bare);
        };
    }

    private static String shown(String path) {
        return path.isEmpty() ? "null" : path;
    }

    private static SchemaException invalidType(String path, String expected) {
        return new SchemaException("Invalid parameter type for '" + shown(path) + "', expected: " + expected);
    }

    private Object builtin(Builtin b, Object json, String path) throws SchemaException {
        switch (b.scalar()) {
            case STR -> {
                if (json instanceof String s) {
                    return s;
                }
                throw invalidType(path, "string");
            }
            case BOOL -> {
                if (json instanceof Boolean bool) {
                    return bool;
                }
                if (mode == Mode.KEYVAL && json instanceof String s) {
                    return switch (s) {
                        case "on", "yes", "true", "y" -> true;
                        case "off", "no", "false", "n" -> false;
                        default -> throw new SchemaException("Parameter '" + path + "' expects 'on' or 'off'");
                    };
                }
                throw invalidType(path, mode == Mode.KEYVAL ? "string" : "boolean");
            }
            case NUMBER -> {
                if (json instanceof Number n && !(json instanceof BigInteger)) {
                    return n.doubleValue();
                }
                if (json instanceof BigInteger big) {
                    return big.doubleValue();
                }
                if (mode == Mode.KEYVAL && json instanceof String s) {
                    try {
                        return Double.parseDouble(s);
                    } catch (NumberFormatException e) {
                        throw new SchemaException("Parameter '" + path + "' expects number");
                    }
                }
                throw invalidType(path, "number");
            }
            case NULL -> {
                if (json == null) {
                    return null;
                }
                throw invalidType(path, "null");
            }
            case ANY -> {
                return json;
            }
        }
        throw new IllegalStateException();
    }

    private Object integer(Qapi.IntKind kind, Object json, String path, String bare) throws SchemaException {
        long v;
        if (mode == Mode.KEYVAL && json instanceof String s) {
            v = keyvalInteger(kind, s, path);
        } else if (kind.unsigned) {
            // QEMU reads every unsigned kind as uint64 first; negative integers wrap around
            if (json instanceof Long l) {
                v = l;
            } else if (json instanceof BigInteger big) {
                v = big.longValue();
            } else {
                throw new SchemaException("Parameter '" + shown(path) + "' expects uint64");
            }
        } else {
            if (json instanceof Long l) {
                v = l;
            } else {
                throw invalidType(path, "integer");
            }
        }
        if (kind.cName != null) {
            boolean inRange = kind.unsigned ? Long.compareUnsigned(v, kind.max) <= 0 : v >= kind.min && v <= kind.max;
            if (!inRange) {
                throw new SchemaException("Parameter '" + (bare == null ? "null" : bare) + "' expects " + kind.cName);
            }
        }
        return v;
    }

    private static long keyvalInteger(Qapi.IntKind kind, String s, String path) throws SchemaException {
        if (kind == Qapi.IntKind.SIZE) {
            try {
                return parseSize(s);
            } catch (NumberFormatException e) {
                throw new SchemaException("Parameter '" + path + "' expects a non-negative number below 2^64");
            }
        }
        try {
            BigInteger v = parseCInteger(s);
            if (kind.unsigned) {
                if (v.signum() < 0 ? v.negate().compareTo(TWO_64) > 0 : v.compareTo(TWO_64) >= 0) {
                    throw new NumberFormatException();
                }
                return v.longValue();
            }
            return v.longValueExact();
        } catch (NumberFormatException | ArithmeticException e) {
            throw new SchemaException("Parameter '" + path + "' expects " + (kind.unsigned ? "uint64" : "integer"));
        }
    }

    /** strtoll with base 0: decimal, 0x hex or 0 octal, optional sign, nothing after. */
    private static BigInteger parseCInteger(String s) {
        String t = s.trim();
        boolean neg = false;
        if (t.startsWith("-") || t.startsWith("+")) {
            neg = t.charAt(0) == '-';
            t = t.substring(1);
        }
        int radix = 10;
        if (t.startsWith("0x") || t.startsWith("0X")) {
            radix = 16;
            t = t.substring(2);
        } else if (t.length() > 1 && t.startsWith("0")) {
            radix = 8;
            t = t.substring(1);
        }
        if (t.isEmpty() || !t.chars().allMatch(c -> Character.digit(c, 16) >= 0 && c < 128)) {
            throw new NumberFormatException(s);
        }
        BigInteger v = new BigInteger(t, radix);
        return neg ? v.negate() : v;
    }

    /** QEMU's size syntax: a number with an optional B/K/M/G/T/P/E suffix (powers of 1024). */
    static long parseSize(String s) {
        String t = s.trim();
        if (t.isEmpty() || t.startsWith("-")) {
            throw new NumberFormatException(s);
        }
        int shift = 0;
        char last = Character.toUpperCase(t.charAt(t.length() - 1));
        int idx = "BKMGTPE".indexOf(last);
        if (idx >= 0) {
            shift = idx * 10;
            t = t.substring(0, t.length() - 1);
        }
        java.math.BigDecimal d = new java.math.BigDecimal(t)
                .multiply(java.math.BigDecimal.valueOf(2).pow(shift));
        BigInteger whole = d.toBigInteger();
        if (whole.signum() < 0 || whole.compareTo(TWO_64) >= 0) {
            throw new NumberFormatException(s);
        }
        return whole.longValue();
    }

    private Object enumValue(EnumType e, Object json, String path, String bare) throws SchemaException {
        if (!(json instanceof String s)) {
            throw invalidType(path, "string");
        }
        Object v = e.decode(s);
        if (v == null) {
            // QEMU's input_type_enum names a member alone ("type" inside actions[0]); for a list
            // element it says 'null', where Strata names the element's path ("enable[0]")
            String shownName = bare != null ? bare : shown(path);
            throw new SchemaException("Parameter '" + shownName + "' does not accept value '" + s + "'");
        }
        return v;
    }

    private Object list(ListType l, Object json, String path) throws SchemaException {
        if (!(json instanceof List<?> items)) {
            throw invalidType(path, "array");
        }
        List<Object> out = new ArrayList<>(items.size());
        for (int i = 0; i < items.size(); i++) {
            out.add(value(l.element(), items.get(i), path + "[" + i + "]", null));
        }
        return java.util.Collections.unmodifiableList(out);
    }

    private static String child(String path, String name) {
        return path.isEmpty() ? name : path + "." + name;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> object(Object json, String path) throws SchemaException {
        if (!(json instanceof Map<?, ?> m)) {
            throw invalidType(path, "object");
        }
        return (Map<String, Object>) m;
    }

    private Object struct(StructType s, Object json, String path) throws SchemaException {
        Map<String, Object> in = object(json, path);
        Object[] values = new Object[s.members().size()];
        Map<String, Object> present = s.construct() == null ? new LinkedHashMap<>() : null;
        visitMembers(s.members(), in, path, values, present);
        checkUnexpected(in, path, s.members(), List.of());
        return s.construct() == null ? present : s.construct().apply(values);
    }

    private void visitMembers(
            List<Member> members, Map<String, Object> in, String path, Object[] values, Map<String, Object> present)
            throws SchemaException {
        for (int i = 0; i < members.size(); i++) {
            Member m = members.get(i);
            String p = child(path, m.name());
            if (in.containsKey(m.name())) {
                Object v = value(m.type(), in.get(m.name()), p, m.name());
                if (values != null) {
                    values[i] = v;
                }
                if (present != null) {
                    present.put(m.name(), v);
                }
            } else if (m.optional()) {
                if (values != null) {
                    values[i] = m.defaultValue();
                }
            } else {
                throw new SchemaException("Parameter '" + p + "' is missing");
            }
        }
    }

    private static void checkUnexpected(Map<String, Object> in, String path, List<Member> a, List<Member> b)
            throws SchemaException {
        for (String key : in.keySet()) {
            if (!declares(a, key) && !declares(b, key)) {
                throw new SchemaException("Parameter '" + child(path, key) + "' is unexpected");
            }
        }
    }

    private static boolean declares(List<Member> members, String name) {
        for (Member m : members) {
            if (m.name().equals(name)) {
                return true;
            }
        }
        return false;
    }

    private Object alternate(AlternateType a, Object json, String path) throws SchemaException {
        JsonKind kind = kindOfValue(json);
        Branch scalarForKeyval = null;
        for (Branch b : a.branches()) {
            if (b.kind() == kind) {
                return b.wrap().apply(value(b.type(), json, path, null));
            }
            if (b.kind() != JsonKind.OBJECT && b.kind() != JsonKind.ARRAY) {
                scalarForKeyval = b;
            }
        }
        if (mode == Mode.KEYVAL && json instanceof String && scalarForKeyval != null) {
            return scalarForKeyval.wrap().apply(value(scalarForKeyval.type(), json, path, null));
        }
        throw invalidType(path, a.name());
    }

    private static JsonKind kindOfValue(Object json) {
        return switch (json) {
            case null -> JsonKind.NULL;
            case Map<?, ?> m -> JsonKind.OBJECT;
            case List<?> l -> JsonKind.ARRAY;
            case String s -> JsonKind.STRING;
            case Boolean b -> JsonKind.BOOLEAN;
            case Number n -> JsonKind.NUMBER;
            default -> throw new IllegalArgumentException("not a JSON value: " + json.getClass());
        };
    }

    private Object union(UnionType u, Object json, String path) throws SchemaException {
        Map<String, Object> in = object(json, path);
        Map<String, Object> present = new LinkedHashMap<>();
        visitMembers(u.base().members(), in, path, null, present);
        Object tag = present.get(u.discriminator());
        StructType variant = u.variants().get(tag instanceof Enum<?> e ? Schema.enumValueName(e) : (String) tag);
        List<Member> variantMembers = variant == null ? List.of() : variant.members();
        visitMembers(variantMembers, in, path, null, present);
        checkUnexpected(in, path, u.base().members(), variantMembers);
        return present;
    }
}
