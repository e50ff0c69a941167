package dev.strata.qmp.schema;

import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns command results into plain JSON values: records become objects named by the same rules
 * as arguments ({@link Qapi}), optional members that are null are left out (QMP never sends
 * {@code null} for an absent member), enums become their QAPI names.
 */
public final class Encoder {
    private Encoder() {}

    public static Object toJson(Object value) {
        return switch (value) {
            case null -> null;
            case String s -> s;
            case Boolean b -> b;
            case Integer i -> (long) i;
            case Long l -> l;
            case Number n -> n;
            case Enum<?> e -> Schema.enumValueName(e);
            case Map<?, ?> m -> map(m);
            case List<?> l -> list(l);
            case Record r -> record(r);
            default ->
                throw new IllegalArgumentException(
                        "cannot encode " + value.getClass().getName());
        };
    }

    private static Map<String, Object> map(Map<?, ?> m) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (var e : m.entrySet()) {
            out.put((String) e.getKey(), toJson(e.getValue()));
        }
        return out;
    }

    private static List<Object> list(List<?> l) {
        List<Object> out = new ArrayList<>(l.size());
        for (Object v : l) {
            out.add(toJson(v));
        }
        return out;
    }

    private static Map<String, Object> record(Record r) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (RecordComponent c : r.getClass().getRecordComponents()) {
            Object v;
            try {
                var accessor = c.getAccessor();
                accessor.setAccessible(true);
                v = accessor.invoke(r);
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException(e);
            }
            if (v == null) {
                continue;
            }
            String name = c.isAnnotationPresent(Qapi.Name.class)
                    ? c.getAnnotation(Qapi.Name.class).value()
                    : Schema.kebab(c.getName());
            out.put(name, toJson(v));
        }
        return out;
    }
}
