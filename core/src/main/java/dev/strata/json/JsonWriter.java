package dev.strata.json;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.List;
import java.util.Map;

/**
 * Writes plain Java values ({@link JsonParser}'s kinds) as QMP output, byte for byte as QEMU does:
 * pure ASCII (everything from U+007F up, and control characters, as {@code \\uXXXX} with upper-case
 * hex; supplementary characters as surrogate pairs), {@code ", "} and {@code ": "} separators,
 * doubles as C's {@code %.17g}.
 *
 * <p>One deliberate difference: QEMU prints an infinite double as {@code inf}, which is not JSON;
 * Strata writes {@code 1e999} (or {@code -1e999}), which every JSON reader turns back into infinity.
 */
public final class JsonWriter {
    private JsonWriter() {}

    public static String write(Object value) {
        StringBuilder out = new StringBuilder();
        write(out, value, -1);
        return out.toString();
    }

    /** QEMU's {@code pretty=on} form: one member per line, four spaces per level. */
    public static String writePretty(Object value) {
        StringBuilder out = new StringBuilder();
        write(out, value, 0);
        return out.toString();
    }

    private static void write(StringBuilder out, Object value, int indent) {
        switch (value) {
            case null -> out.append("null");
            case String s -> string(out, s);
            case Boolean b -> out.append(b ? "true" : "false");
            case Long l -> out.append(l);
            case Integer i -> out.append(i);
            case BigInteger b -> out.append(b);
            case Double d -> out.append(formatDouble(d));
            case Map<?, ?> m -> object(out, m, indent);
            case List<?> l -> array(out, l, indent);
            default ->
                throw new IllegalArgumentException(
                        "not a JSON value: " + value.getClass().getName());
        }
    }

    private static void object(StringBuilder out, Map<?, ?> m, int indent) {
        out.append('{');
        boolean first = true;
        for (var e : m.entrySet()) {
            if (!first) {
                out.append(indent < 0 ? ", " : ",");
            }
            first = false;
            newline(out, indent, 1);
            string(out, (String) e.getKey());
            out.append(": ");
            write(out, e.getValue(), indent < 0 ? -1 : indent + 1);
        }
        newline(out, indent, 0);
        out.append('}');
    }

    private static void array(StringBuilder out, List<?> l, int indent) {
        out.append('[');
        boolean first = true;
        for (Object v : l) {
            if (!first) {
                out.append(indent < 0 ? ", " : ",");
            }
            first = false;
            newline(out, indent, 1);
            write(out, v, indent < 0 ? -1 : indent + 1);
        }
        newline(out, indent, 0);
        out.append(']');
    }

    /** Pretty output only ({@code indent >= 0}): a line break and the indentation of the next line. */
    private static void newline(StringBuilder out, int indent, int deeper) {
        if (indent >= 0) {
            out.append('\n').repeat("    ", indent + deeper);
        }
    }

    private static void string(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20 || c >= 0x7f) {
                        out.append(String.format("\\u%04X", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }

    /** C's {@code printf("%.17g")}: 17 significant digits, trailing zeros dropped. */
    static String formatDouble(double d) {
        if (Double.isNaN(d)) {
            return "null";
        }
        if (Double.isInfinite(d)) {
            return d > 0 ? "1e999" : "-1e999";
        }
        if (d == 0) {
            return (1 / d < 0) ? "-0" : "0";
        }
        BigDecimal rounded = new BigDecimal(d).round(new MathContext(17, RoundingMode.HALF_EVEN));
        int exponent = rounded.precision() - rounded.scale() - 1;
        String digits = rounded.unscaledValue().abs().toString();
        // pad to 17 digits, then drop trailing zeros as %g does
        StringBuilder sig = new StringBuilder(digits);
        while (sig.length() < 17) {
            sig.append('0');
        }
        int end = sig.length();
        while (end > 1 && sig.charAt(end - 1) == '0') {
            end--;
        }
        String mant = sig.substring(0, end);
        StringBuilder out = new StringBuilder();
        if (d < 0) {
            out.append('-');
        }
        if (exponent < -4 || exponent >= 17) {
            out.append(mant.charAt(0));
            if (mant.length() > 1) {
                out.append('.').append(mant, 1, mant.length());
            }
            out.append('e').append(exponent < 0 ? '-' : '+');
            int abs = Math.abs(exponent);
            if (abs < 10) {
                out.append('0');
            }
            out.append(abs);
        } else if (exponent < 0) {
            out.append("0.").repeat("0", -exponent - 1).append(mant);
        } else if (mant.length() <= exponent + 1) {
            out.append(mant).repeat("0", exponent + 1 - mant.length());
        } else {
            out.append(mant, 0, exponent + 1).append('.').append(mant, exponent + 1, mant.length());
        }
        return out.toString();
    }
}
