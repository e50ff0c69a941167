package dev.strata.img;

import java.math.BigDecimal;
import java.math.BigInteger;

/**
 * A size on a qemu-img command line, read exactly as QEMU 7.2's {@code qemu_strtosz} reads it:
 * decimal digits (leading blanks and a '+' allowed, a '-' refused), or {@code 0x} hex; an
 * optional fraction ("1.5M", never with an exponent, and only with a suffix); an optional suffix
 * B, K, M, G, T, P or E (powers of 1024, either case); nothing after it. The value is unsigned
 * 64-bit: callers that store it in a signed {@code long} see sizes of 8 EiB and more as negative,
 * as qemu-img's own {@code int64_t} does.
 */
final class SizeArgument {
    private static final BigInteger TWO_64 = BigInteger.ONE.shiftLeft(64);

    private SizeArgument() {}

    /** A parsed size; {@code hexWithSuffix} asks for QEMU's deprecation warning. */
    record Size(long value, boolean hexWithSuffix) {}

    /** Why a size was refused: not a size at all, or too big for 64 bits (QEMU's EINVAL, ERANGE). */
    static final class Refused extends Exception {
        private static final long serialVersionUID = 1L;

        final boolean outOfRange;

        Refused(boolean outOfRange) {
            super(outOfRange ? "out of range" : "invalid", null, false, false);
            this.outOfRange = outOfRange;
        }
    }

    static Size parse(String s) throws Refused {
        int i = 0;
        while (i < s.length() && " \t\n\u000b\f\r".indexOf(s.charAt(i)) >= 0) {
            i++;
        }
        int signAt = i;
        if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
            i++;
        }
        int digits = i;
        while (i < s.length() && Character.isDigit(s.charAt(i)) && s.charAt(i) < 128) {
            i++;
        }
        if (i == digits) {
            throw new Refused(false);
        }
        BigInteger value = new BigInteger(s.substring(digits, i));
        boolean negative = s.charAt(signAt) == '-';
        // strtoull's overflow is reported before the sign is looked at; trailing text beats both
        boolean overflow = value.compareTo(TWO_64) >= 0;
        BigInteger fraction = BigInteger.ZERO;
        boolean hex = false;
        if (!overflow && !negative && value.signum() == 0 && i < s.length() && (s.charAt(i) | 0x20) == 'x') {
            int h = i + 1;
            int end = h;
            while (end < s.length() && Character.digit(s.charAt(end), 16) >= 0 && s.charAt(end) < 128) {
                end++;
            }
            if (end > h) {
                value = new BigInteger(s.substring(h, end), 16);
                overflow = value.compareTo(TWO_64) >= 0;
                i = end;
                if (i < s.length() && s.charAt(i) == '.') {
                    throw new Refused(false);
                }
                hex = true;
            }
        } else if (!overflow && i < s.length() && s.charAt(i) == '.') {
            int f = i + 1;
            int end = f;
            while (end < s.length() && Character.isDigit(s.charAt(end)) && s.charAt(end) < 128) {
                end++;
            }
            if (end == f) {
                i = f; // "1." and "1.M": no fraction digits, the dot is skipped
            } else {
                int exp = end;
                if (exp < s.length() && (s.charAt(exp) | 0x20) == 'e' && exponentFollows(s, exp + 1)) {
                    throw new Refused(false);
                }
                double d = Double.parseDouble("0" + s.substring(i, end));
                fraction = new BigDecimal(d).multiply(new BigDecimal(TWO_64)).toBigInteger();
                i = end;
            }
        }
        long mul = i < s.length() ? suffix(s.charAt(i)) : -1;
        if (mul > 0) {
            i++;
        } else {
            mul = 1;
        }
        if (i < s.length()) {
            throw new Refused(false);
        }
        if (overflow) {
            throw new Refused(true);
        }
        if (negative) {
            throw new Refused(false);
        }
        BigInteger result;
        if (mul == 1) {
            if (fraction.signum() != 0) {
                throw new Refused(false);
            }
            result = value;
        } else {
            BigInteger m = BigInteger.valueOf(mul);
            BigInteger frac = fraction.multiply(m);
            // the fraction's part in 64.64 fixed point, rounded half up
            result =
                    value.multiply(m).add(frac.shiftRight(64)).add(frac.testBit(63) ? BigInteger.ONE : BigInteger.ZERO);
        }
        if (result.compareTo(TWO_64) >= 0) {
            throw new Refused(true);
        }
        return new Size(result.longValue(), hex && mul > 1);
    }

    /** Whether strtod would read an exponent from {@code from}: digits, after an optional sign. */
    private static boolean exponentFollows(String s, int from) {
        int i = from;
        if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
            i++;
        }
        return i < s.length() && Character.isDigit(s.charAt(i)) && s.charAt(i) < 128;
    }

    private static long suffix(char c) {
        int idx = "BKMGTPE".indexOf(Character.toUpperCase(c));
        return idx < 0 ? -1 : 1L << (10 * idx);
    }
}
