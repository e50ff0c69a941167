package dev.strata.qmp.schema;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns command results into plain JSON values: records become objects named by the same rules
 * as arguments ({@link Qapi}), optional members that are null are left out (QMP never sends
 * {@code null} for an absent member), enums become their QAPI names.
 *
 * <p>What reflection tells about a record class (its members' names and accessors) is looked up
 * once per class: every reply and event goes through here, and asking again each time cost more
 * than the rest of a small command's reply.
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
        for (Component c : COMPONENTS.get(r.getClass())) {
            Object v;
            try {
                v = c.accessor().invokeExact((Object) r);
            } catch (RuntimeException | Error e) {
                throw e;
            } catch (Throwable e) {
                throw new IllegalStateException(e);
            }
            if (v != null) {
                out.put(c.name(), toJson(v));
            }
        }
        return out;
    }

    /** A record member as encoded: its QAPI name, and its accessor typed {@code (Object)Object}. */
    private record Component(String name, MethodHandle accessor) {}

    private static final ClassValue<List<Component>> COMPONENTS = new ClassValue<>() {
        @Override
        protected List<Component> computeValue(Class<?> type) {
            MethodType erased = MethodType.methodType(Object.class, Object.class);
            List<Component> out = new ArrayList<>();
            for (RecordComponent c : type.getRecordComponents()) {
                try {
                    var accessor = c.getAccessor();
                    accessor.setAccessible(true);
                    out.add(new Component(
                            Schema.memberName(c),
                            MethodHandles.lookup().unreflect(accessor).asType(erased)));
                } catch (ReflectiveOperationException e) {
                    throw new IllegalStateException(e);
                }
            }
            return List.copyOf(out);
        }
    };
}
