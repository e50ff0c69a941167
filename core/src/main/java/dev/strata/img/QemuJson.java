package dev.strata.img;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.PrettyPrinter;
import com.fasterxml.jackson.core.json.JsonWriteFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.AbstractMap;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Renders values as JSON byte for byte the way qemu-img prints its QAPI objects: four-space
 * indent, {@code "key": value}, every object and array opened on its own line and closed on a new
 * line (an empty array prints as {@code [}, newline, indent, {@code ]}), non-ASCII escaped.
 *
 * <p>Key order: qemu-img turns its QAPI structs into QDicts, hash tables of 512 buckets, and prints
 * them in bucket order (within a bucket, the most recently inserted key first). So its field order
 * is neither the schema's nor alphabetical; {@link #qdictOrder} reproduces it from the order the
 * caller inserted the keys in (the schema's order), and both the JSON and the human renderings use it.
 */
public final class QemuJson {
    private static final ObjectMapper MAPPER =
            JsonMapper.builder().enable(JsonWriteFeature.ESCAPE_NON_ASCII).build();

    private QemuJson() {}

    /** The pretty text of {@code value}, without a trailing newline. */
    public static String pretty(Object value) {
        try {
            return MAPPER.writer(new QemuPrettyPrinter()).writeValueAsString(qdictOrder(value));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot render " + value.getClass() + " as JSON", e);
        }
    }

    public static ObjectMapper mapper() {
        return MAPPER;
    }

    /** Number of hash buckets in QEMU's QDict. */
    private static final int QDICT_BUCKETS = 512;

    /**
     * A copy of {@code value} whose maps (at any depth) iterate in QDict order; lists keep their
     * order and other values are returned as they are.
     */
    public static Object qdictOrder(Object value) {
        return switch (value) {
            case Map<?, ?> m -> {
                List<Map.Entry<String, Object>> entries = new ArrayList<>();
                for (var e : m.entrySet()) {
                    entries.add(new AbstractMap.SimpleImmutableEntry<>(
                            String.valueOf(e.getKey()), qdictOrderOrNull(e.getValue())));
                }
                List<Integer> order = new ArrayList<>();
                for (int i = 0; i < entries.size(); i++) {
                    order.add(i);
                }
                // bucket ascending; inside a bucket, later insertions first (QEMU inserts at the head)
                order.sort(Comparator.<Integer>comparingInt(
                                i -> bucket(entries.get(i).getKey()))
                        .thenComparing(Comparator.<Integer>reverseOrder()));
                Map<String, Object> out = new LinkedHashMap<>();
                for (int i : order) {
                    out.put(entries.get(i).getKey(), entries.get(i).getValue());
                }
                yield out;
            }
            case List<?> l -> {
                List<Object> out = new ArrayList<>();
                for (Object o : l) {
                    out.add(qdictOrderOrNull(o));
                }
                yield out;
            }
            default -> value;
        };
    }

    private static Object qdictOrderOrNull(Object value) {
        return value == null ? null : qdictOrder(value);
    }

    /** QEMU's QDict bucket of a key: the TDB hash (a fixed public algorithm) modulo 512. */
    static int bucket(String key) {
        byte[] b = key.getBytes(StandardCharsets.UTF_8);
        int v = 0x238F13AF * b.length;
        for (int i = 0; i < b.length; i++) {
            v += (b[i] & 0xff) << (i * 5 % 24);
        }
        int h = 1103515243 * v + 12345;
        return (int) (Integer.toUnsignedLong(h) % QDICT_BUCKETS);
    }

    /** QEMU's qobject_to_json_pretty layout; stateful (the nesting level), so one per rendering. */
    private static final class QemuPrettyPrinter implements PrettyPrinter {
        private int level;

        private static void newline(JsonGenerator g, int level) throws IOException {
            g.writeRaw('\n');
            for (int i = 0; i < level; i++) {
                g.writeRaw("    ");
            }
        }

        @Override
        public void writeRootValueSeparator(JsonGenerator g) throws IOException {
            g.writeRaw('\n');
        }

        @Override
        public void writeStartObject(JsonGenerator g) throws IOException {
            g.writeRaw('{');
            level++;
        }

        @Override
        public void beforeObjectEntries(JsonGenerator g) throws IOException {
            newline(g, level);
        }

        @Override
        public void writeObjectFieldValueSeparator(JsonGenerator g) throws IOException {
            g.writeRaw(": ");
        }

        @Override
        public void writeObjectEntrySeparator(JsonGenerator g) throws IOException {
            g.writeRaw(',');
            newline(g, level);
        }

        @Override
        public void writeEndObject(JsonGenerator g, int nrOfEntries) throws IOException {
            level--;
            newline(g, level);
            g.writeRaw('}');
        }

        @Override
        public void writeStartArray(JsonGenerator g) throws IOException {
            g.writeRaw('[');
            level++;
        }

        @Override
        public void beforeArrayValues(JsonGenerator g) throws IOException {
            newline(g, level);
        }

        @Override
        public void writeArrayValueSeparator(JsonGenerator g) throws IOException {
            g.writeRaw(',');
            newline(g, level);
        }

        @Override
        public void writeEndArray(JsonGenerator g, int nrOfValues) throws IOException {
            level--;
            newline(g, level);
            g.writeRaw(']');
        }
    }
}
