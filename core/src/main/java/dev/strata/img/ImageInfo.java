package dev.strata.img;

import dev.strata.block.BlockNode;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What {@code qemu-img info} reports about one image (QEMU's ImageInfo), as a map in QAPI field
 * order, and its human rendering.
 *
 * <p>Fields appear only when QEMU would set them: {@code cluster-size} only for formats with
 * clusters, {@code actual-size} only when the host file's allocation is known, the three backing
 * fields only when the image names a backing file (its stored name, not the opened child's path).
 */
final class ImageInfo {
    private final Map<String, Object> fields;

    private ImageInfo(Map<String, Object> fields) {
        this.fields = fields;
    }

    /** Collects the info of {@code node}; {@code facts} carries what only the image's header knows. */
    static ImageInfo of(BlockNode node, FormatFacts facts) throws IOException {
        FormatFacts.BackingFile backing = facts.backing();
        Map<String, Object> m = new LinkedHashMap<>();
        String filename = node.filename();
        m.put("filename", filename);
        m.put("format", node.driverName());
        m.put("dirty-flag", facts.dirty());
        long actual = node.driver().allocatedFileSize();
        if (actual >= 0) {
            m.put("actual-size", actual);
        }
        m.put("virtual-size", node.length());
        if (node.clusterSize() > 0) {
            m.put("cluster-size", (long) node.clusterSize());
        }
        if (backing != null) {
            m.put("backing-filename", backing.filename());
            m.put("full-backing-filename", fullBackingFilename(filename, backing.filename()));
            if (backing.format() != null) {
                m.put("backing-filename-format", backing.format());
            }
        }
        Map<String, Object> specific = node.driver().formatSpecific();
        if (!specific.isEmpty()) {
            Map<String, Object> fs = new LinkedHashMap<>();
            fs.put("type", node.driverName());
            fs.put("data", specific);
            m.put("format-specific", fs);
        }
        return new ImageInfo(m);
    }

    /** QEMU's path_combine: a relative backing name is taken relative to the image's directory, textually. */
    static String fullBackingFilename(String imageFilename, String backingFilename) {
        if (backingFilename.startsWith("/") || backingFilename.contains("://") || imageFilename.isEmpty()) {
            return backingFilename;
        }
        int slash = imageFilename.lastIndexOf('/');
        return slash < 0 ? backingFilename : imageFilename.substring(0, slash + 1) + backingFilename;
    }

    Map<String, Object> fields() {
        return fields;
    }

    String fullBackingFilename() {
        return (String) fields.get("full-backing-filename");
    }

    String backingFormat() {
        return (String) fields.get("backing-filename-format");
    }

    /** qemu-img info's human text for this image, each line ending in a newline. */
    String human() {
        StringBuilder sb = new StringBuilder();
        long virtualSize = (Long) fields.get("virtual-size");
        sb.append("image: ").append(fields.get("filename")).append('\n');
        sb.append("file format: ").append(fields.get("format")).append('\n');
        sb.append("virtual size: ")
                .append(sizeToStr(virtualSize))
                .append(" (")
                .append(virtualSize)
                .append(" bytes)\n");
        Object actual = fields.get("actual-size");
        sb.append("disk size: ")
                .append(actual == null ? "unavailable" : sizeToStr((Long) actual))
                .append('\n');
        if (fields.containsKey("cluster-size")) {
            sb.append("cluster_size: ").append(fields.get("cluster-size")).append('\n');
        }
        if (Boolean.TRUE.equals(fields.get("dirty-flag"))) {
            sb.append("cleanly shut down: no\n");
        }
        if (fields.containsKey("backing-filename")) {
            String name = (String) fields.get("backing-filename");
            String full = (String) fields.get("full-backing-filename");
            sb.append("backing file: ").append(name);
            if (!name.equals(full)) {
                sb.append(" (actual path: ").append(full).append(')');
            }
            sb.append('\n');
            if (fields.containsKey("backing-filename-format")) {
                sb.append("backing file format: ")
                        .append(fields.get("backing-filename-format"))
                        .append('\n');
            }
        }
        if (fields.get("format-specific") instanceof Map<?, ?> fs) {
            sb.append("Format specific information:\n");
            dumpObject(sb, 1, QemuJson.qdictOrder(fs.get("data")));
        }
        return sb.toString();
    }

    /** QEMU's human dump of a QObject tree: dashes in keys become spaces, lists print "[i]:". */
    private static void dumpObject(StringBuilder sb, int indent, Object value) {
        switch (value) {
            case Map<?, ?> m -> {
                for (var e : m.entrySet()) {
                    boolean composite = e.getValue() instanceof Map || e.getValue() instanceof List;
                    sb.append("    ".repeat(indent))
                            .append(String.valueOf(e.getKey()).replace('-', ' '))
                            .append(':')
                            .append(composite ? '\n' : ' ');
                    dumpObject(sb, indent + 1, e.getValue());
                    if (!composite) {
                        sb.append('\n');
                    }
                }
            }
            case List<?> l -> {
                for (int i = 0; i < l.size(); i++) {
                    Object v = l.get(i);
                    boolean composite = v instanceof Map || v instanceof List;
                    sb.append("    ".repeat(indent))
                            .append('[')
                            .append(i)
                            .append("]:")
                            .append(composite ? '\n' : ' ');
                    dumpObject(sb, indent + 1, v);
                    if (!composite) {
                        sb.append('\n');
                    }
                }
            }
            case null -> sb.append("null");
            default -> sb.append(value);
        }
    }

    /**
     * QEMU's size_to_str: the unit is chosen at 1000 of the previous unit (so 1000 bytes print as
     * "0.977 KiB"), the number as C's {@code %0.3g}.
     */
    static String sizeToStr(long bytes) {
        String[] suffixes = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
        double scaled = bytes / (1000.0 / 1024.0);
        int exp = scaled == 0 ? 0 : Math.getExponent(scaled) + 1; // frexp's exponent
        int i = Math.max(0, (exp - 1) / 10);
        double value = (double) bytes / (double) (1L << (i * 10));
        return formatG3(value) + " " + suffixes[i] + "B";
    }

    /** C's {@code %0.3g} for values in [0, 1000]: three significant digits, trailing zeros dropped. */
    static String formatG3(double v) {
        if (v == 0) {
            return "0";
        }
        BigDecimal d = new BigDecimal(v).round(new MathContext(3, RoundingMode.HALF_EVEN));
        if (d.compareTo(BigDecimal.valueOf(1000)) >= 0) {
            // %g switches to an exponent once the rounded value has four integer digits
            return "1e+03";
        }
        String s = d.stripTrailingZeros().toPlainString();
        return s;
    }
}
