package dev.strata.block;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The options a node opens with, as a tree of keys: QEMU's {@code --blockdev} dotted form
 * ({@code driver=qcow2,file.driver=file,file.filename=a.qcow2}) and its JSON form become the same
 * tree. Values are strings, booleans, numbers, nested options or {@code null} (QEMU's
 * {@code "backing": null}).
 *
 * <p>Accessors convert as QEMU's keyval visitor does, so {@code "on"} and {@code true} are the same
 * boolean and {@code "65536"} and {@code 65536} the same number. Every key a driver reads is
 * remembered; {@link #unusedKeys()} lists the rest so the opener can refuse unknown options.
 */
public final class BlockOptions {
    private final Map<String, Object> values;
    private final java.util.Set<String> used = new java.util.HashSet<>();

    private BlockOptions(Map<String, Object> values) {
        this.values = values;
    }

    public static BlockOptions empty() {
        return new BlockOptions(new LinkedHashMap<>());
    }

    /** Builds options from a map of the JSON form; nested maps become nested options. */
    public static BlockOptions fromMap(Map<String, ?> map) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (var e : map.entrySet()) {
            out.put(e.getKey(), convert(e.getValue()));
        }
        return new BlockOptions(out);
    }

    /**
     * Builds options from a JSON object as QEMU reads a {@code json:} filename: nested objects and
     * dotted keys ({@code "file.filename"}) alike, merged into one tree.
     *
     * @throws IllegalArgumentException for keys used both as a value and as an object
     */
    public static BlockOptions fromJsonObject(Map<String, ?> map) {
        BlockOptions out = empty();
        for (var e : map.entrySet()) {
            Object v = e.getValue() instanceof Map<?, ?> m ? fromJsonObject(castMap(m)) : e.getValue();
            if (v instanceof BlockOptions nested && out.values.get(e.getKey()) instanceof BlockOptions existing) {
                nested.values.forEach(existing::putDotted);
            } else {
                out.putDotted(e.getKey(), v);
            }
        }
        return out;
    }

    @SuppressWarnings("unchecked")
    private static Map<String, ?> castMap(Map<?, ?> m) {
        return (Map<String, ?>) m;
    }

    @SuppressWarnings("unchecked")
    private static Object convert(Object v) {
        if (v instanceof Map<?, ?> m) {
            return fromMap((Map<String, ?>) m);
        }
        return v;
    }

    /**
     * Parses QEMU's dotted key=value form. Commas inside a value are written as ",,"; a first item
     * without '=' is taken as the value of {@code impliedKey} when one is given.
     */
    public static BlockOptions parseKeyValue(String text, String impliedKey) {
        BlockOptions root = empty();
        int i = 0;
        boolean first = true;
        while (i <= text.length()) {
            StringBuilder item = new StringBuilder();
            while (i < text.length()) {
                char c = text.charAt(i);
                if (c == ',') {
                    if (i + 1 < text.length() && text.charAt(i + 1) == ',') {
                        item.append(',');
                        i += 2;
                        continue;
                    }
                    break;
                }
                item.append(c);
                i++;
            }
            i++;
            String s = item.toString();
            if (s.isEmpty()) {
                if (i > text.length()) {
                    break;
                }
                throw new IllegalArgumentException("Invalid parameter ''");
            }
            int eq = s.indexOf('=');
            String key;
            String value;
            if (eq < 0) {
                if (first && impliedKey != null) {
                    key = impliedKey;
                    value = s;
                } else {
                    throw new IllegalArgumentException("Expected '=' after parameter '" + s + "'");
                }
            } else {
                key = s.substring(0, eq);
                value = s.substring(eq + 1);
            }
            for (String part : key.split("\\.", -1)) {
                if (part.isEmpty()) {
                    throw new IllegalArgumentException("Invalid parameter '" + key + "'");
                }
            }
            root.putDotted(key, value);
            first = false;
        }
        return root;
    }

    private void putDotted(String dottedKey, Object value) {
        if (dottedKey.isEmpty()) {
            throw new IllegalArgumentException("Invalid parameter ''");
        }
        int dot = dottedKey.indexOf('.');
        if (dot < 0) {
            if (values.get(dottedKey) instanceof BlockOptions) {
                throw new IllegalArgumentException("Parameters '" + dottedKey + ".*' used inconsistently");
            }
            values.put(dottedKey, value);
            return;
        }
        String head = dottedKey.substring(0, dot);
        Object existing = values.get(head);
        BlockOptions child;
        if (existing instanceof BlockOptions o) {
            child = o;
        } else if (existing == null) {
            child = empty();
            values.put(head, child);
        } else {
            throw new IllegalArgumentException("Parameters '" + head + ".*' used inconsistently");
        }
        child.putDotted(dottedKey.substring(dot + 1), value);
    }

    public BlockOptions put(String key, Object value) {
        values.put(key, convert(value));
        return this;
    }

    public boolean has(String key) {
        return values.containsKey(key);
    }

    /** The raw value: String, Boolean, Number, BlockOptions or null. */
    public Object get(String key) {
        used.add(key);
        return values.get(key);
    }

    public Optional<String> string(String key) {
        Object v = get(key);
        if (v == null) {
            return Optional.empty();
        }
        if (v instanceof BlockOptions) {
            throw new IllegalArgumentException("Invalid parameter type for '" + key + "', expected: string");
        }
        return Optional.of(v.toString());
    }

    public String requireString(String key) {
        return string(key).orElseThrow(() -> new IllegalArgumentException("Parameter '" + key + "' is missing"));
    }

    public boolean bool(String key, boolean defaultValue) {
        Object v = get(key);
        return switch (v) {
            case null -> defaultValue;
            case Boolean b -> b;
            case String s when s.equals("on") || s.equals("true") || s.equals("yes") -> true;
            case String s when s.equals("off") || s.equals("false") || s.equals("no") -> false;
            default -> throw new IllegalArgumentException("Parameter '" + key + "' expects 'on' or 'off'");
        };
    }

    public long number(String key, long defaultValue) {
        Object v = get(key);
        return switch (v) {
            case null -> defaultValue;
            case Number n -> n.longValue();
            case String s -> Sizes.parse(s, key);
            default ->
                throw new IllegalArgumentException("Invalid parameter type for '" + key + "', expected: integer");
        };
    }

    /** Nested options under {@code key}, if the value is a nested object. */
    public Optional<BlockOptions> child(String key) {
        return get(key) instanceof BlockOptions o ? Optional.of(o) : Optional.empty();
    }

    public Map<String, Object> asMap() {
        return Collections.unmodifiableMap(values);
    }

    /** Keys present but never read, dotted for nested options ("file.bogus"). */
    public java.util.List<String> unusedKeys() {
        java.util.List<String> out = new java.util.ArrayList<>();
        for (var e : values.entrySet()) {
            if (!used.contains(e.getKey())) {
                out.add(e.getKey());
            }
        }
        return out;
    }

    @Override
    public String toString() {
        return values.toString();
    }
}
