package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The outcome of {@code check} on an image, with what {@code qemu-img check} prints for it: the
 * JSON object of {@code --output=json} ({@link #toJsonMap}), the human report ({@link
 * #toHumanText}), the diagnostic lines for standard error ({@link #diagnostics}) and the exit code.
 *
 * <p>{@code completed} is false when the check could not finish (the image could not be opened, or
 * an internal error stopped the check): qemu-img then prints no report, only {@code failure}, and
 * exits with 1. The counts follow QEMU's rule that a repair is followed by a second, read-only
 * check whose numbers are reported, together with what the repair fixed.
 *
 * @param filename the image name as the user gave it
 * @param format always "qcow2"
 * @param completed whether a report exists
 * @param failure the error qemu-img would print last ("Check failed: Input/output error", "Could not
 *     open 'x': ..."), or null
 * @param repaired whether a repair fixed something (the human report then starts with the list of
 *     repairs)
 * @param log the diagnostic lines of every pass
 */
public record Qcow2CheckResult(
        String filename,
        String format,
        boolean completed,
        String failure,
        long checkErrors,
        long corruptions,
        long leaks,
        long corruptionsFixed,
        long leaksFixed,
        long imageEndOffset,
        long totalClusters,
        long allocatedClusters,
        long fragmentedClusters,
        long compressedClusters,
        boolean repaired,
        Qcow2CheckLog log) {

    static Qcow2CheckResult completed(
            String filename, Qcow2CheckTally t, boolean repaired, String failure, Qcow2CheckLog log) {
        if (failure != null) {
            log.error(failure);
        }
        return new Qcow2CheckResult(
                filename,
                "qcow2",
                true,
                failure,
                t.checkErrors,
                t.corruptions,
                t.leaks,
                t.corruptionsFixed,
                t.leaksFixed,
                t.imageEndOffset,
                t.totalClusters,
                t.allocatedClusters,
                t.fragmentedClusters,
                t.compressedClusters,
                repaired,
                log);
    }

    static Qcow2CheckResult failed(
            String filename,
            String failure,
            long corruptionsFixed,
            long leaksFixed,
            boolean repaired,
            Qcow2CheckLog log) {
        log.error(failure);
        return new Qcow2CheckResult(
                filename, "qcow2", false, failure, 0, 0, 0, corruptionsFixed, leaksFixed, 0, 0, 0, 0, 0, repaired, log);
    }

    /**
     * qemu-img's exit code: 0 clean, 1 check not completed or internal errors, 2 corruptions, 3
     * leaks only.
     */
    public int exitCode() {
        if (!completed || checkErrors > 0) {
            return 1;
        }
        if (corruptions > 0) {
            return 2;
        }
        return leaks > 0 ? 3 : 0;
    }

    /**
     * The {@code --output=json} object, keys in the order qemu-img prints them (the order of
     * QEMU's dictionary hash); optional counts appear only when non-zero, as in qemu-img. Empty
     * when the check did not complete (qemu-img prints nothing then).
     */
    public Map<String, Object> toJsonMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        if (!completed) {
            return m;
        }
        putNonZero(m, "image-end-offset", imageEndOffset);
        putNonZero(m, "compressed-clusters", compressedClusters);
        putNonZero(m, "total-clusters", totalClusters);
        putNonZero(m, "corruptions", corruptions);
        putNonZero(m, "corruptions-fixed", corruptionsFixed);
        m.put("check-errors", checkErrors);
        putNonZero(m, "leaks", leaks);
        putNonZero(m, "leaks-fixed", leaksFixed);
        putNonZero(m, "allocated-clusters", allocatedClusters);
        m.put("filename", filename);
        m.put("format", format);
        putNonZero(m, "fragmented-clusters", fragmentedClusters);
        return m;
    }

    private static void putNonZero(Map<String, Object> m, String key, long value) {
        if (value != 0) {
            m.put(key, value);
        }
    }

    /** What qemu-img prints on standard output in its human format. */
    public String toHumanText() {
        StringBuilder sb = new StringBuilder();
        if (repaired) {
            sb.append("The following inconsistencies were found and repaired:\n\n")
                    .append("    ")
                    .append(leaksFixed)
                    .append(" leaked clusters\n")
                    .append("    ")
                    .append(corruptionsFixed)
                    .append(" corruptions\n\n")
                    .append("Double checking the fixed image now...\n");
        }
        if (!completed) {
            return sb.toString();
        }
        if (corruptions == 0 && leaks == 0 && checkErrors == 0) {
            sb.append("No errors were found on the image.\n");
        } else {
            if (corruptions != 0) {
                sb.append('\n')
                        .append(corruptions)
                        .append(" errors were found on the image.\n")
                        .append("Data may be corrupted, or further writes to the image may corrupt it.\n");
            }
            if (leaks != 0) {
                sb.append('\n')
                        .append(leaks)
                        .append(" leaked clusters were found on the image.\n")
                        .append("This means waste of disk space, but no harm to data.\n");
            }
            if (checkErrors != 0) {
                sb.append('\n').append(checkErrors).append(" internal errors have occurred during the check.\n");
            }
        }
        if (totalClusters != 0 && allocatedClusters != 0) {
            sb.append(allocatedClusters)
                    .append('/')
                    .append(totalClusters)
                    .append(" = ")
                    .append(percent(allocatedClusters, totalClusters))
                    .append("% allocated, ")
                    .append(percent(fragmentedClusters, allocatedClusters))
                    .append("% fragmented, ")
                    .append(percent(compressedClusters, allocatedClusters))
                    .append("% compressed clusters\n");
        }
        if (imageEndOffset != 0) {
            sb.append("Image end offset: ").append(imageEndOffset).append('\n');
        }
        return sb.toString();
    }

    /** C's {@code %0.2f} of {@code a * 100.0 / b}: the exact double rounded half-to-even, as glibc does. */
    static String percent(long a, long b) {
        double v = a * 100.0 / b;
        return new BigDecimal(v).setScale(2, RoundingMode.HALF_EVEN).toPlainString();
    }

    /**
     * The lines qemu-img prints on standard error, with {@code program} in front of the lines it
     * prints through its error reporting (e.g. "qemu-img: Check failed").
     */
    public List<String> diagnostics(String program) {
        return log.render(program);
    }

    /** strerror() text for the errno values a check can fail with. */
    static String strerror(int errno) {
        return BlockException.strerror(errno);
    }
}
