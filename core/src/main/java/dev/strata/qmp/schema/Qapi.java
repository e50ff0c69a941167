package dev.strata.qmp.schema;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Annotations that complete what a record's Java types say about its QAPI shape.
 *
 * <p>The rules, so that a record reads like its QAPI definition: a component's QAPI name is its
 * Java name in kebab case ({@code nodeName} is {@code node-name}) unless {@link Name} says
 * otherwise; it is required unless marked {@link Optional} (absent means {@code null}) or given a
 * {@link Default}; {@code long} means QAPI {@code int} unless {@link Int} names a sized kind.
 */
public final class Qapi {
    private Qapi() {}

    /** The QAPI name of a member, enum value or type, where the Java name cannot say it. */
    @Retention(RetentionPolicy.RUNTIME)
    @Target({ElementType.RECORD_COMPONENT, ElementType.FIELD, ElementType.TYPE})
    public @interface Name {
        String value();
    }

    /** An optional member without a default: {@code null} when absent, and omitted on output. */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.RECORD_COMPONENT)
    public @interface Optional {}

    /** An optional member whose absence means this value, written as JSON ("false", "65536"). */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.RECORD_COMPONENT)
    public @interface Default {
        String value();
    }

    /** A sized integer kind for a {@code long} member. */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.RECORD_COMPONENT)
    public @interface Int {
        IntKind value();
    }

    /** A member of QAPI type {@code any}: any JSON value, passed on as parsed. */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.RECORD_COMPONENT)
    public @interface Any {}

    /**
     * Marks the one-component record of an alternate's scalar branch: the JSON value is the
     * component itself, not an object holding it (QAPI's {@code 'local': 'str'}).
     */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.TYPE)
    public @interface Unboxed {}

    /** QAPI's integer kinds; each has QEMU's own range check and message. */
    public enum IntKind {
        INT8("int8", "int8_t", -128, 127, false),
        INT16("int16", "int16_t", -32768, 32767, false),
        INT32("int32", "int32_t", Integer.MIN_VALUE, Integer.MAX_VALUE, false),
        INT64("int", null, Long.MIN_VALUE, Long.MAX_VALUE, false),
        UINT8("uint8", "uint8_t", 0, 255, true),
        UINT16("uint16", "uint16_t", 0, 65535, true),
        UINT32("uint32", "uint32_t", 0, 0xffffffffL, true),
        UINT64("uint64", null, 0, -1, true),
        SIZE("size", null, 0, -1, true);

        final String qapiName;
        /** The C type QEMU names when a value is out of range; null when the type has no narrower range. */
        final String cName;

        final long min;
        final long max;
        final boolean unsigned;

        IntKind(String qapiName, String cName, long min, long max, boolean unsigned) {
            this.qapiName = qapiName;
            this.cName = cName;
            this.min = min;
            this.max = max;
            this.unsigned = unsigned;
        }
    }
}
