package dev.strata.qmp.schema;

import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * A QAPI type as Strata declares it: built-in scalars, enums, lists, structs (records), alternates
 * (sealed interfaces) and flat unions. {@link Decoder} checks JSON against these; {@link Encoder}
 * writes command results with them.
 */
public sealed interface QType {
    /** The name QEMU uses for the type in messages and introspection. */
    String name();

    /** QAPI's built-in types. */
    enum Scalar {
        STR("str"),
        BOOL("bool"),
        NUMBER("number"),
        NULL("null"),
        ANY("any");

        final String qapiName;

        Scalar(String qapiName) {
            this.qapiName = qapiName;
        }
    }

    record Builtin(Scalar scalar) implements QType {
        @Override
        public String name() {
            return scalar.qapiName;
        }
    }

    record IntType(Qapi.IntKind kind) implements QType {
        @Override
        public String name() {
            return kind.qapiName;
        }
    }

    /** An enum; {@code javaType} is null for enums declared without a Java enum. */
    record EnumType(String name, List<String> values, Class<? extends Enum<?>> javaType) implements QType {
        Object decode(String value) {
            int i = values.indexOf(value);
            if (i < 0) {
                return null;
            }
            return javaType == null ? value : javaType.getEnumConstants()[i];
        }
    }

    record ListType(QType element) implements QType {
        @Override
        public String name() {
            return "[" + element.name() + "]";
        }
    }

    /**
     * One member of a struct: its QAPI name, type, whether it may be absent, and the value absence
     * means (null when there is none).
     */
    record Member(String name, QType type, boolean optional, Object defaultValue) {}

    /**
     * A struct. {@code construct} builds the Java value from the decoded members in declaration
     * order (a record's canonical constructor); without it the struct decodes to a map of the
     * members present, which is what options passed on to the block layer need.
     */
    record StructType(String name, List<Member> members, Function<Object[], Object> construct) implements QType {
        public Member member(String memberName) {
            for (Member m : members) {
                if (m.name().equals(memberName)) {
                    return m;
                }
            }
            return null;
        }
    }

    /** One branch of an alternate: the JSON kind that selects it and the type it decodes with. */
    record Branch(JsonKind kind, QType type, Function<Object, Object> wrap) {}

    /** An alternate: the JSON kind of the value picks the branch (QAPI's BlockdevRef, BlockDirtyBitmapOrStr). */
    record AlternateType(String name, List<Branch> branches) implements QType {}

    /**
     * A flat union: a base struct whose {@code discriminator} member (an enum) selects the variant
     * struct whose members complete the object. Decodes to a map of the members present.
     */
    record UnionType(String name, StructType base, String discriminator, Map<String, StructType> variants)
            implements QType {}

    /** A named reference resolved on use, for recursive types (BlockdevOptions holds BlockdevRefs). */
    record Lazy(String name, java.util.function.Supplier<QType> target) implements QType {}

    /** The kinds of JSON value an alternate tells apart. */
    enum JsonKind {
        OBJECT,
        ARRAY,
        STRING,
        NUMBER,
        BOOLEAN,
        NULL
    }
}
