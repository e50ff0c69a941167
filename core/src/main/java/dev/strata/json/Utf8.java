package dev.strata.json;

/**
 * QEMU's reading of UTF-8 in QMP input: "modified" UTF-8, where the overlong pair C0 80 stands for
 * U+0000, and where surrogates, noncharacters (U+FDD0..U+FDEF, U+xxFFFE/U+xxFFFF) and code points
 * past U+10FFFF are refused like any other malformed sequence.
 */
final class Utf8 {
    private Utf8() {}

    /** Whether QEMU accepts {@code cp} as a character of a string (escaped or raw). */
    static boolean isValidCodePoint(int cp) {
        if (cp < 0 || cp > 0x10ffff) {
            return false;
        }
        if (cp >= 0xd800 && cp <= 0xdfff) {
            return false;
        }
        return !(cp >= 0xfdd0 && cp <= 0xfdef) && (cp & 0xfffe) != 0xfffe;
    }

    /**
     * Decodes one character starting at {@code pos}; returns {@code codePoint << 8 | byteLength},
     * or -1 when the bytes there are not a valid sequence.
     */
    static long decode(byte[] s, int pos, int end) {
        int b0 = s[pos] & 0xff;
        if (b0 < 0x80) {
            return ((long) b0 << 8) | 1;
        }
        int len;
        int cp;
        if (b0 >= 0xc0 && b0 < 0xe0) {
            len = 2;
            cp = b0 & 0x1f;
        } else if (b0 >= 0xe0 && b0 < 0xf0) {
            len = 3;
            cp = b0 & 0x0f;
        } else if (b0 >= 0xf0 && b0 < 0xf8) {
            len = 4;
            cp = b0 & 0x07;
        } else {
            return -1;
        }
        if (pos + len > end) {
            return -1;
        }
        for (int i = 1; i < len; i++) {
            int b = s[pos + i] & 0xff;
            if ((b & 0xc0) != 0x80) {
                return -1;
            }
            cp = (cp << 6) | (b & 0x3f);
        }
        if (len == 2 && cp == 0) {
            return 2; // C0 80: modified UTF-8's NUL
        }
        int min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
        if (cp < min || !isValidCodePoint(cp)) {
            return -1;
        }
        return ((long) cp << 8) | len;
    }

    /** Decodes for display: every malformed byte becomes U+FFFD (as QEMU prints them). */
    static String lenientDecode(byte[] s) {
        StringBuilder out = new StringBuilder(s.length);
        int pos = 0;
        while (pos < s.length) {
            long r = decode(s, pos, s.length);
            if (r < 0) {
                out.append('\ufffd');
                pos++;
            } else {
                out.appendCodePoint((int) (r >>> 8));
                pos += (int) (r & 0xff);
            }
        }
        return out.toString();
    }
}
