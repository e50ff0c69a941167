package dev.strata.qmp.schema;

import dev.strata.qmp.schema.QType.AlternateType;
import dev.strata.qmp.schema.QType.Branch;
import dev.strata.qmp.schema.QType.Builtin;
import dev.strata.qmp.schema.QType.EnumType;
import dev.strata.qmp.schema.QType.IntType;
import dev.strata.qmp.schema.QType.JsonKind;
import dev.strata.qmp.schema.QType.ListType;
import dev.strata.qmp.schema.QType.Member;
import dev.strata.qmp.schema.QType.Scalar;
import dev.strata.qmp.schema.QType.StructType;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Derives QAPI types from Java declarations, once per class: records become structs, enums
 * become enums, sealed interfaces of records become alternates (see {@link Qapi} for the rules).
 *
 * <p>A declaration that cannot be mapped (a primitive member that is optional without a default,
 * an unsupported Java type) fails when the command is registered, at start-up, never at run time.
 */
public final class Schema {
    private static final Map<Class<?>, QType> CACHE = new ConcurrentHashMap<>();

    private Schema() {}

    /** The QAPI type of a record, enum or sealed interface. */
    public static QType of(Class<?> type) {
        QType cached = CACHE.get(type);
        if (cached != null) {
            return cached;
        }
        QType built;
        if (type.isRecord()) {
            built = struct(type);
        } else if (type.isEnum()) {
            built = enumType(type);
        } else if (type.isSealed() && type.isInterface()) {
            built = alternate(type);
        } else {
            throw new IllegalArgumentException("no QAPI type for " + type.getName());
        }
        CACHE.putIfAbsent(type, built);
        return CACHE.get(type);
    }

    /** The struct type of a record (for command arguments). */
    public static StructType struct(Class<?> record) {
        if (!record.isRecord()) {
            throw new IllegalArgumentException(record.getName() + " is not a record");
        }
        RecordComponent[] components = record.getRecordComponents();
        List<Member> members = new ArrayList<>(components.length);
        for (RecordComponent c : components) {
            members.add(member(record, c));
        }
        Constructor<?> ctor = canonicalConstructor(record, components);
        return new StructType(typeName(record), List.copyOf(members), args -> {
            try {
                return ctor.newInstance(args);
            } catch (InvocationTargetException e) {
                if (e.getCause() instanceof RuntimeException r) {
                    throw r;
                }
                throw new IllegalStateException(e.getCause());
            } catch (ReflectiveOperationException e) {
                throw new IllegalStateException("cannot build " + record.getName(), e);
            }
        });
    }

    private static Constructor<?> canonicalConstructor(Class<?> record, RecordComponent[] components) {
        Class<?>[] types = new Class<?>[components.length];
        for (int i = 0; i < components.length; i++) {
            types[i] = components[i].getType();
        }
        try {
            Constructor<?> ctor = record.getDeclaredConstructor(types);
            ctor.setAccessible(true);
            return ctor;
        } catch (NoSuchMethodException e) {
            throw new IllegalArgumentException("record without canonical constructor: " + record.getName(), e);
        }
    }

    /** A record member's QAPI name: its @Name, else its Java name in kebab-case. */
    static String memberName(RecordComponent c) {
        Qapi.Name n = c.getAnnotation(Qapi.Name.class);
        return n != null ? n.value() : kebab(c.getName());
    }

    private static Member member(Class<?> owner, RecordComponent c) {
        String name = memberName(c);
        QType type;
        if (c.isAnnotationPresent(Qapi.Any.class)) {
            type = new Builtin(Scalar.ANY);
        } else if (c.isAnnotationPresent(Qapi.Int.class)) {
            if (c.getType() != long.class && c.getType() != Long.class) {
                throw new IllegalArgumentException(owner.getName() + "." + c.getName() + ": @Int needs a long");
            }
            type = new IntType(c.getAnnotation(Qapi.Int.class).value());
        } else {
            type = typeOf(c.getGenericType(), owner.getName() + "." + c.getName());
        }
        boolean optional = c.isAnnotationPresent(Qapi.Optional.class);
        Object defaultValue = null;
        if (c.isAnnotationPresent(Qapi.Default.class)) {
            optional = true;
            try {
                defaultValue = Decoder.decodeDefault(
                        type, c.getAnnotation(Qapi.Default.class).value());
            } catch (SchemaException e) {
                throw new IllegalArgumentException(owner.getName() + "." + c.getName() + ": bad default", e);
            }
        } else if (optional && c.getType().isPrimitive()) {
            throw new IllegalArgumentException(
                    owner.getName() + "." + c.getName() + ": an optional primitive needs a @Default");
        }
        return new Member(name, type, optional, defaultValue);
    }

    /** The QAPI type of a Java member type. */
    public static QType typeOf(Type t, String where) {
        if (t instanceof ParameterizedType p && p.getRawType() == List.class) {
            return new ListType(typeOf(p.getActualTypeArguments()[0], where));
        }
        if (!(t instanceof Class<?> c)) {
            throw new IllegalArgumentException(where + ": unsupported type " + t);
        }
        if (c == String.class) {
            return new Builtin(Scalar.STR);
        }
        if (c == long.class || c == Long.class) {
            return new IntType(Qapi.IntKind.INT64);
        }
        if (c == boolean.class || c == Boolean.class) {
            return new Builtin(Scalar.BOOL);
        }
        if (c == double.class || c == Double.class) {
            return new Builtin(Scalar.NUMBER);
        }
        if (c == Object.class) {
            return new Builtin(Scalar.ANY);
        }
        return of(c);
    }

    @SuppressWarnings("unchecked")
    private static EnumType enumType(Class<?> type) {
        Object[] constants = type.getEnumConstants();
        List<String> values = new ArrayList<>(constants.length);
        for (Object constant : constants) {
            values.add(enumValueName((Enum<?>) constant));
        }
        return new EnumType(typeName(type), List.copyOf(values), (Class<? extends Enum<?>>) type);
    }

    /** An enum constant's QAPI name: its @Name, else lower case with '-' for '_'. */
    public static String enumValueName(Enum<?> constant) {
        return ENUM_NAMES.get(constant.getDeclaringClass())[constant.ordinal()];
    }

    /** The QAPI names of an enum's constants, by ordinal: looked up once per enum, not per value sent. */
    private static final ClassValue<String[]> ENUM_NAMES = new ClassValue<>() {
        @Override
        protected String[] computeValue(Class<?> type) {
            Object[] constants = type.getEnumConstants();
            String[] names = new String[constants.length];
            for (Object o : constants) {
                Enum<?> constant = (Enum<?>) o;
                Qapi.Name n;
                try {
                    n = type.getField(constant.name()).getAnnotation(Qapi.Name.class);
                } catch (NoSuchFieldException e) {
                    throw new IllegalStateException(e);
                }
                names[constant.ordinal()] = n != null
                        ? n.value()
                        : constant.name().toLowerCase(Locale.ROOT).replace('_', '-');
            }
            return names;
        }
    };

    private static AlternateType alternate(Class<?> sealed) {
        List<Branch> branches = new ArrayList<>();
        for (Class<?> variant : sealed.getPermittedSubclasses()) {
            if (!variant.isRecord()) {
                throw new IllegalArgumentException(
                        sealed.getName() + ": alternate branch " + variant + " is no record");
            }
            if (variant.isAnnotationPresent(Qapi.Unboxed.class)) {
                RecordComponent[] cs = variant.getRecordComponents();
                if (cs.length != 1) {
                    throw new IllegalArgumentException(variant.getName() + ": @Unboxed needs exactly one component");
                }
                QType inner = typeOf(cs[0].getGenericType(), variant.getName());
                Constructor<?> ctor = canonicalConstructor(variant, cs);
                branches.add(new Branch(kindOf(inner), inner, v -> {
                    try {
                        return ctor.newInstance(v);
                    } catch (ReflectiveOperationException e) {
                        throw new IllegalStateException(e);
                    }
                }));
            } else {
                branches.add(new Branch(JsonKind.OBJECT, struct(variant), v -> v));
            }
        }
        return new AlternateType(typeName(sealed), List.copyOf(branches));
    }

    /** The JSON kind a type's values have (for telling alternate branches apart). */
    public static JsonKind kindOf(QType t) {
        return switch (t) {
            case Builtin b ->
                switch (b.scalar()) {
                    case STR -> JsonKind.STRING;
                    case BOOL -> JsonKind.BOOLEAN;
                    case NUMBER -> JsonKind.NUMBER;
                    case NULL -> JsonKind.NULL;
                    case ANY -> throw new IllegalArgumentException("'any' cannot be an alternate branch");
                };
            case IntType i -> JsonKind.NUMBER;
            case EnumType e -> JsonKind.STRING;
            case ListType l -> JsonKind.ARRAY;
            case StructType s -> JsonKind.OBJECT;
            case QType.UnionType u -> JsonKind.OBJECT;
            case QType.Lazy l -> kindOf(l.target().get());
            case AlternateType a -> throw new IllegalArgumentException("an alternate cannot nest an alternate");
        };
    }

    private static String typeName(Class<?> type) {
        Qapi.Name n = type.getAnnotation(Qapi.Name.class);
        return n != null ? n.value() : type.getSimpleName();
    }

    /** camelCase to QAPI's kebab-case: {@code nodeName} is {@code node-name}. */
    static String kebab(String javaName) {
        StringBuilder out = new StringBuilder(javaName.length() + 4);
        for (int i = 0; i < javaName.length(); i++) {
            char c = javaName.charAt(i);
            if (Character.isUpperCase(c)) {
                out.append('-').append(Character.toLowerCase(c));
            } else {
                out.append(c);
            }
        }
        return out.toString();
    }
}
