package dev.strata.block;

/** Parses and prints sizes the way QEMU's tools do: plain bytes or a k/M/G/T/P/E suffix (powers of 1024). */
public final class Sizes {
    private Sizes() {}

    public static final long KiB = 1024L;
    public static final long MiB = KiB * 1024;
    public static final long GiB = MiB * 1024;
    public static final long TiB = GiB * 1024;

    /** Parses "65536", "64k", "1M", "1.5G"; refuses negatives and overflow with the key's name. */
    public static long parse(String text, String what) {
        String s = text.trim();
        if (s.isEmpty()) {
            throw new IllegalArgumentException("Parameter '" + what + "' expects a size");
        }
        long mult = 1;
        char last = Character.toLowerCase(s.charAt(s.length() - 1));
        int shift = switch (last) {
            case 'b' -> 0;
            case 'k' -> 10;
            case 'm' -> 20;
            case 'g' -> 30;
            case 't' -> 40;
            case 'p' -> 50;
            case 'e' -> 60;
            default -> -1;
        };
        if (shift >= 0) {
            mult = 1L << shift;
            s = s.substring(0, s.length() - 1);
        }
        try {
            if (s.contains(".")) {
                double d = Double.parseDouble(s) * mult;
                if (d < 0 || d >= 0x1p63) {
                    throw new NumberFormatException();
                }
                return (long) d;
            }
            long v = Long.parseLong(s);
            if (v < 0 || (mult > 1 && v > Long.MAX_VALUE / mult)) {
                throw new NumberFormatException();
            }
            return v * mult;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(
                    "Parameter '" + what + "' expects a non-negative number below 2^63, optionally followed by"
                            + " a suffix of k, M, G, T, P or E",
                    e);
        }
    }

    /** Human form as qemu-img prints it: "64 KiB", "1 GiB", "1.5 MiB", "512 B". */
    public static String human(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        if (u == 0) {
            return bytes + " B";
        }
        // qemu-img prints up to three significant digits: 1 GiB, 1.5 GiB, 10 GiB, 128 GiB
        String num;
        if (v == Math.rint(v)) {
            num = Long.toString((long) v);
        } else if (v < 10) {
            num = stripZeros(String.format(java.util.Locale.ROOT, "%.2f", v));
        } else if (v < 100) {
            num = stripZeros(String.format(java.util.Locale.ROOT, "%.1f", v));
        } else {
            num = Long.toString(Math.round(v));
        }
        return num + " " + units[u];
    }

    private static String stripZeros(String s) {
        if (!s.contains(".")) {
            return s;
        }
        s = s.replaceAll("0+$", "");
        return s.endsWith(".") ? s.substring(0, s.length() - 1) : s;
    }
}
