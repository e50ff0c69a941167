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

    /**
     * One diagnostic line: {@code lead} (text an earlier message left unterminated), then
     * "program: " when {@code prefixed}, then {@code text}.
     */
    public record Line(String lead, boolean prefixed, String text) {}

    private final List<Line> lines = new ArrayList<>();
    private long dropped;
    private String pending = "";

    void message(String text) {
        add(false, text);
    }

    /** A line QEMU prints with error_report: "qemu-img: text". */
    void error(String text) {
        add(true, text);
    }

    /** A line QEMU prints with warn_report: "qemu-img: warning: text". */
    void warn(String text) {
        add(true, "warning: " + text);
    }

    /** Text QEMU prints without a line end: the next line starts with it. */
    void unterminated(String text) {
        pending += text;
    }

    private void add(boolean prefixed, String text) {
        Line line = new Line(pending, prefixed, text);
        pending = "";
        if (lines.size() < LIMIT) {
            lines.add(line);
        } else {
            dropped++;
        }
    }

    /** The lines so far; unterminated text not yet followed by a line comes last. */
    public List<Line> lines() {
        List<Line> out = new ArrayList<>(lines);
        if (!pending.isEmpty()) {
            out.add(new Line(pending, false, ""));
        }
        return out;
    }

    /** Lines that were not kept because the log was full. */
    public long dropped() {
        return dropped;
    }

    /** The lines as printed by {@code program} (e.g. "qemu-img"), with a closing count if any were dropped. */
    public List<String> render(String program) {
        List<String> out = new ArrayList<>(lines.size() + 2);
        for (Line l : lines()) {
            out.add(l.lead() + (l.prefixed() ? program + ": " : "") + l.text());
        }
        if (dropped > 0) {
            out.add("(" + dropped + " more messages not shown)");
        }
        return out;
    }
}
