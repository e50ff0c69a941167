package dev.strata.json;

import dev.strata.json.JsonStreamer.Kind;
import dev.strata.json.JsonStreamer.Token;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Parses the tokens of one message into plain Java values: {@code Map<String, Object>} (insertion
 * ordered) for objects, {@code List<Object>} for arrays, {@code String}, {@code Long}, {@code
 * BigInteger} (integers between 2^63 and 2^64-1, as QEMU keeps them unsigned), {@code Double},
 * {@code Boolean} and {@code null}.
 *
 * <p>Every refusal carries QEMU's text ("JSON parse error, expected separator in dict"); the first
 * error wins, as in QEMU. Extensions QEMU accepts are accepted: single-quoted strings and the
 * {@code \'} escape. Integers too large for 64 bits become doubles, as QEMU's do.
 */
final class JsonParser {
    private static final BigInteger UINT64_MAX = BigInteger.ONE.shiftLeft(64).subtract(BigInteger.ONE);

    /** A syntax error, worded as QEMU words it. */
    static final class ParseError extends Exception {
        private static final long serialVersionUID = 1L;

        ParseError(String detail) {
            super("JSON parse error, " + detail, null, false, false);
        }
    }

    private final List<Token> tokens;
    private int next;

    private JsonParser(List<Token> tokens) {
        this.tokens = tokens;
    }

    static Object parse(List<Token> tokens) throws ParseError {
        return new JsonParser(tokens).value();
    }

    private Token peek() {
        return next < tokens.size() ? tokens.get(next) : null;
    }

    private Token pop() {
        return next < tokens.size() ? tokens.get(next++) : null;
    }

    private Object value() throws ParseError {
        Token t = peek();
        if (t == null) {
            throw new ParseError("premature EOI");
        }
        return switch (t.kind()) {
            case LCURLY -> object();
            case LSQUARE -> array();
            case INTEGER -> integer(pop());
            case FLOAT -> Double.parseDouble(pop().ascii());
            case STRING -> string(pop());
            case KEYWORD -> keyword(pop());
            default -> throw new ParseError("expecting value");
        };
    }

    private Map<String, Object> object() throws ParseError {
        pop();
        Map<String, Object> map = new LinkedHashMap<>();
        Token t = peek();
        if (t == null) {
            throw new ParseError("premature EOI");
        }
        if (t.kind() == Kind.RCURLY) {
            pop();
            return map;
        }
        pair(map);
        for (t = pop(); ; t = pop()) {
            if (t == null) {
                throw new ParseError("premature EOI");
            }
            if (t.kind() == Kind.RCURLY) {
                return map;
            }
            if (t.kind() != Kind.COMMA) {
                throw new ParseError("expected separator in dict");
            }
            pair(map);
        }
    }

    private void pair(Map<String, Object> map) throws ParseError {
        if (peek() == null) {
            throw new ParseError("premature EOI");
        }
        if (!(value() instanceof String key)) {
            throw new ParseError("key is not a string in object");
        }
        Token colon = pop();
        if (colon == null) {
            throw new ParseError("premature EOI");
        }
        if (colon.kind() != Kind.COLON) {
            throw new ParseError("missing : in object pair");
        }
        Object v = value();
        if (map.containsKey(key)) {
            throw new ParseError("duplicate key");
        }
        map.put(key, v);
    }

    private List<Object> array() throws ParseError {
        pop();
        List<Object> list = new ArrayList<>();
        Token t = peek();
        if (t == null) {
            throw new ParseError("premature EOI");
        }
        if (t.kind() == Kind.RSQUARE) {
            pop();
            return list;
        }
        list.add(value());
        for (t = pop(); ; t = pop()) {
            if (t == null) {
                throw new ParseError("premature EOI");
            }
            if (t.kind() == Kind.RSQUARE) {
                return list;
            }
            if (t.kind() != Kind.COMMA) {
                throw new ParseError("expected separator in list");
            }
            // the seed document's transaction examples end their action lists with "}, ]"; QEMU
            // refuses that ("expecting value"), Strata accepts a comma before ']' so they run as printed
            Token next = peek();
            if (next != null && next.kind() == Kind.RSQUARE) {
                pop();
                return list;
            }
            list.add(value());
        }
    }

    private static Object integer(Token t) {
        String s = t.ascii();
        try {
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            if (!s.startsWith("-")) {
                BigInteger big = new BigInteger(s);
                if (big.compareTo(UINT64_MAX) <= 0) {
                    return big;
                }
            }
            return Double.parseDouble(s);
        }
    }

    private static Object keyword(Token t) throws ParseError {
        return switch (t.ascii()) {
            case "true" -> Boolean.TRUE;
            case "false" -> Boolean.FALSE;
            case "null" -> null;
            default -> throw new ParseError("invalid keyword '" + t.ascii() + "'");
        };
    }

    private static String string(Token t) throws ParseError {
        byte[] s = t.text();
        int end = s.length - 1; // the closing quote
        StringBuilder out = new StringBuilder(end);
        int pos = 1;
        while (pos < end) {
            int b = s[pos] & 0xff;
            if (b != '\\') {
                long r = Utf8.decode(s, pos, end);
                if (r < 0) {
                    throw new ParseError("invalid UTF-8 sequence in string");
                }
                out.appendCodePoint((int) (r >>> 8));
                pos += (int) (r & 0xff);
                continue;
            }
            int escape = pos;
            int c = s[pos + 1] & 0xff;
            pos += 2;
            switch (c) {
                case '"' -> out.append('"');
                case '\'' -> out.append('\'');
                case '\\' -> out.append('\\');
                case '/' -> out.append('/');
                case 'b' -> out.append('\b');
                case 'f' -> out.append('\f');
                case 'n' -> out.append('\n');
                case 'r' -> out.append('\r');
                case 't' -> out.append('\t');
                case 'u' -> {
                    int cp = hex4(s, pos, end);
                    pos += 4;
                    if (cp >= 0xd800 && cp <= 0xdbff && pos + 1 < end && s[pos] == '\\' && s[pos + 1] == 'u') {
                        int low = hex4(s, pos + 2, end);
                        if (low >= 0xdc00 && low <= 0xdfff) {
                            cp = 0x10000 + ((cp & 0x3ff) << 10) + (low & 0x3ff);
                            pos += 6;
                        } else {
                            cp = -1;
                        }
                    }
                    if (!Utf8.isValidCodePoint(cp)) {
                        // QEMU quotes the escape as written, up to six bytes or the end of the token
                        int shown = Math.min(pos, s.length) - escape;
                        String text = Utf8.lenientDecode(java.util.Arrays.copyOfRange(s, escape, escape + shown));
                        throw new ParseError(text + " is not a valid Unicode character");
                    }
                    out.appendCodePoint(cp);
                }
                default -> throw new ParseError("invalid escape sequence in string");
            }
        }
        return out.toString();
    }

    private static int hex4(byte[] s, int pos, int end) {
        if (pos + 4 > end) {
            return -1;
        }
        int v = 0;
        for (int i = 0; i < 4; i++) {
            int c = s[pos + i] & 0xff;
            int d = c >= '0' && c <= '9'
                    ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) {
                return -1;
            }
            v = (v << 4) | d;
        }
        return v;
    }
}
