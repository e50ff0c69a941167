package dev.strata.img;

import dev.strata.block.Sizes;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * The creation options of one image format ({@code -o key=value,...}), kept as qemu-img keeps
 * them: each known option in the format's own order with its default, so the "Formatting ..." line
 * lists exactly what qemu-img 7.2 lists, in its order.
 *
 * <p>Values are kept as typed (qemu-img echoes {@code lazy_refcounts=true} as given) except sizes,
 * which print as plain byte counts. Later settings of a key replace earlier ones.
 */
final class CreateOptions {
    /** One option of a format: name, whether it is a size, and the default qemu-img prints (or null). */
    private record Spec(String name, boolean size, String defaultValue) {}

    // the order is the order of QEMU 7.2's create_opts lists, which is the order it prints them in
    private static final List<Spec> QCOW2 = List.of(
            new Spec("cluster_size", true, "65536"),
            new Spec("extended_l2", false, "off"),
            new Spec("preallocation", false, null),
            new Spec("compression_type", false, "zlib"),
            new Spec("size", true, null),
            new Spec("compat", false, null),
            new Spec("backing_file", false, null),
            new Spec("backing_fmt", false, null),
            new Spec("lazy_refcounts", false, "off"),
            new Spec("refcount_bits", true, "16"));

    private static final List<Spec> RAW = List.of(new Spec("size", true, null), new Spec("preallocation", false, null));

    private final String format;
    private final List<Spec> specs;
    private final Map<String, String> values = new LinkedHashMap<>();

    private CreateOptions(String format, List<Spec> specs) {
        this.format = format;
        this.specs = specs;
    }

    /** The formats {@code strata img create} can make. */
    static boolean canCreate(String format) {
        return format.equals("qcow2") || format.equals("raw");
    }

    /** Parses every {@code -o} list given, in order; unknown keys are refused as qemu-img refuses them. */
    static CreateOptions parse(String format, List<String> optionLists) {
        CreateOptions o = new CreateOptions(format, format.equals("qcow2") ? QCOW2 : RAW);
        for (String list : optionLists) {
            for (String item : splitList(list)) {
                int eq = item.indexOf('=');
                String key = eq < 0 ? item : item.substring(0, eq);
                String value = eq < 0 ? "on" : item.substring(eq + 1);
                o.set(key, value);
            }
        }
        return o;
    }

    /** Splits "a=1,b=x,,y" at single commas; ",," stands for a comma inside a value, as in QEMU. */
    private static List<String> splitList(String list) {
        List<String> out = new java.util.ArrayList<>();
        StringBuilder cur = new StringBuilder();
        for (int i = 0; i < list.length(); i++) {
            char c = list.charAt(i);
            if (c == ',') {
                if (i + 1 < list.length() && list.charAt(i + 1) == ',') {
                    cur.append(',');
                    i++;
                    continue;
                }
                out.add(cur.toString());
                cur.setLength(0);
            } else {
                cur.append(c);
            }
        }
        if (!cur.isEmpty()) {
            out.add(cur.toString());
        }
        return out;
    }

    /** Sets one option; sizes are parsed now so that a bad number fails before anything is created. */
    void set(String key, String value) {
        Spec spec = specs.stream()
                .filter(s -> s.name().equals(key))
                .findFirst()
                .orElseThrow(() -> new IllegalArgumentException("Invalid parameter '" + key + "'"));
        if (spec.size()) {
            value = Long.toString(Sizes.parse(value, key));
        }
        values.put(key, value);
    }

    boolean supports(String key) {
        return specs.stream().anyMatch(s -> s.name().equals(key));
    }

    Optional<String> get(String key) {
        return Optional.ofNullable(values.get(key));
    }

    /** The value set or, failing that, the format's default. */
    String getOrDefault(String key) {
        String v = values.get(key);
        if (v != null) {
            return v;
        }
        return specs.stream()
                .filter(s -> s.name().equals(key))
                .map(Spec::defaultValue)
                .findFirst()
                .orElse(null);
    }

    OptionalLong size() {
        String v = values.get("size");
        return v == null ? OptionalLong.empty() : OptionalLong.of(Long.parseLong(v));
    }

    /** A boolean option in QEMU's spellings (on/off, yes/no, true/false). */
    boolean bool(String key) {
        String v = getOrDefault(key);
        return switch (v) {
            case "on", "yes", "true" -> true;
            case "off", "no", "false" -> false;
            default -> throw new IllegalArgumentException("Parameter '" + key + "' expects 'on' or 'off'");
        };
    }

    /** qemu-img's line before creating: {@code Formatting 'FILE', fmt=FMT key=value ...}. */
    String formattingLine(String filename) {
        StringBuilder sb = new StringBuilder("Formatting '")
                .append(filename)
                .append("', fmt=")
                .append(format);
        for (Spec s : specs) {
            String v = values.getOrDefault(s.name(), s.defaultValue());
            if (v != null) {
                sb.append(' ').append(s.name()).append('=').append(v);
            }
        }
        return sb.toString();
    }
}
