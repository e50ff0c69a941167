package dev.strata.block.qcow2;

import java.util.ArrayList;
import java.util.List;

/**
 * The diagnostic lines a check prints on standard error, as {@code qemu-img check} prints them
 * ("ERROR cluster 6 refcount=0 reference=1", "Leaked cluster 5 refcount=2 reference=1", ...).
 *
 * <p>A hostile image can produce one line per cluster, so the log keeps at most {@link #LIMIT}
 * lines and then counts the rest; the counts in the check result stay exact. Lines QEMU prints
 * through its error reporting carry the program's name in front; those are marked so the caller
 * can put its own name there.
 */
public final class Qcow2CheckLog {
    /** Lines kept before the rest are only counted. */
    public static final int LIMIT = 10_000;

    /** One diagnostic line; {@code prefixed} lines get "program: " in front when printed. */
    public record Line(boolean prefixed, String text) {}

    private final List<Line> lines = new ArrayList<>();
    private long dropped;

    void message(String text) {
        add(new Line(false, text));
    }

    /** A line QEMU prints with error_report: "qemu-img: text". */
    void error(String text) {
        add(new Line(true, text));
    }

    /** A line QEMU prints with warn_report: "qemu-img: warning: text". */
    void warn(String text) {
        add(new Line(true, "warning: " + text));
    }

    private void add(Line line) {
        if (lines.size() < LIMIT) {
            lines.add(line);
        } else {
            dropped++;
        }
    }

    public List<Line> lines() {
        return List.copyOf(lines);
    }

    /** Lines that were not kept because the log was full. */
    public long dropped() {
        return dropped;
    }

    /** The lines as printed by {@code program} (e.g. "qemu-img"), with a closing count if any were dropped. */
    public List<String> render(String program) {
        List<String> out = new ArrayList<>(lines.size() + 1);
        for (Line l : lines) {
            out.add(l.prefixed() ? program + ": " + l.text() : l.text());
        }
        if (dropped > 0) {
            out.add("(" + dropped + " more messages not shown)");
        }
        return out;
    }
}
