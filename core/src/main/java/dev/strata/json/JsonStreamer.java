package dev.strata.json;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Splits a QMP byte stream into JSON values the way QEMU 7.2's monitor does: a lexer turns bytes
 * into tokens, and a message is complete when its braces and brackets balance (or a closing one
 * appears with nothing open), at which point the queued tokens are parsed by {@link JsonParser}.
 *
 * <p>Error recovery is QEMU's, so a client that resynchronises QEMU resynchronises Strata: a byte
 * the lexer cannot use reports {@code JSON parse error, stray '<token so far>'}, drops every queued
 * token, and skips input until a structural character, a control character other than tab, or a
 * 0xFE/0xFF byte. Parse errors come out in the same order as the values around them.
 *
 * <p>Bounds (as QEMU's): 64 MiB of token text and 2 Mi tokens per message, nesting depth 1024.
 * They keep a hostile client from making a session hold more than that.
 *
 * <p>Not thread-safe: one streamer per session, fed by the session's reader.
 */
public final class JsonStreamer {
    /** Receives each complete value, or the error that ended a message. */
    public interface Sink {
        void value(Object json);

        void error(String message);
    }

    static final long MAX_TOKEN_SIZE = 64L << 20;
    static final int MAX_TOKEN_COUNT = 2 << 20;
    static final int MAX_NESTING = 1 << 10;

    /** Token kinds; the lexer's intermediate states are in {@link State}. */
    enum Kind {
        LCURLY,
        RCURLY,
        LSQUARE,
        RSQUARE,
        COLON,
        COMMA,
        INTEGER,
        FLOAT,
        KEYWORD,
        STRING
    }

    /** One token: its kind and its bytes exactly as received (quotes included for strings). */
    record Token(Kind kind, byte[] text) {
        String ascii() {
            return new String(text, StandardCharsets.ISO_8859_1);
        }
    }

    private enum State {
        START,
        RECOVERY,
        DQ_STRING,
        DQ_ESCAPE,
        SQ_STRING,
        SQ_ESCAPE,
        ZERO,
        DIGITS,
        SIGN,
        MANTISSA,
        MANTISSA_DIGITS,
        EXP_E,
        EXP_SIGN,
        EXP_DIGITS,
        KEYWORD
    }

    private final Sink sink;
    private State state = State.START;
    private final ByteText token = new ByteText();
    private List<Token> tokens = new ArrayList<>();
    private long tokenSize;
    private int braces;
    private int brackets;

    public JsonStreamer(Sink sink) {
        this.sink = sink;
    }

    public void feed(byte[] buf, int off, int len) {
        for (int i = off; i < off + len; i++) {
            feed(buf[i] & 0xff);
        }
    }

    /**
     * End of input (QEMU's json_message_parser_flush): a token still being read is ended, and an
     * unfinished message is parsed as it is, so its error is reported rather than kept waiting.
     */
    public void flush() {
        if (state != State.START && state != State.RECOVERY) {
            feed(' ');
        }
        state = State.START;
        if (tokens.isEmpty()) {
            return;
        }
        List<Token> message = tokens;
        reset();
        try {
            JsonParser.parse(message);
            sink.error("JSON parse error, premature EOF");
        } catch (JsonParser.ParseError e) {
            sink.error(e.getMessage());
        }
    }

    private void feed(int b) {
        // a terminal state that needed lookahead hands the same byte back to START
        while (!step(b)) {
            // step() returned false: the byte was not consumed, run it again from START
        }
        if (token.length() > MAX_TOKEN_SIZE) {
            // one token too big to keep: QEMU gives up on the message; so do we
            token.clear();
            state = State.START;
            fail("JSON token size limit exceeded");
        }
    }

    /** Runs one lexer transition; returns whether {@code b} was consumed. */
    private boolean step(int b) {
        switch (state) {
            case START -> {
                switch (b) {
                    case ' ', '\t', '\r', '\n' -> {}
                    case '"' -> begin(State.DQ_STRING, b);
                    case '\'' -> begin(State.SQ_STRING, b);
                    case '0' -> begin(State.ZERO, b);
                    case '-' -> begin(State.SIGN, b);
                    case '{' -> single(Kind.LCURLY, b);
                    case '}' -> single(Kind.RCURLY, b);
                    case '[' -> single(Kind.LSQUARE, b);
                    case ']' -> single(Kind.RSQUARE, b);
                    case ',' -> single(Kind.COMMA, b);
                    case ':' -> single(Kind.COLON, b);
                    default -> {
                        if (b >= '1' && b <= '9') {
                            begin(State.DIGITS, b);
                        } else if (b >= 'a' && b <= 'z') {
                            begin(State.KEYWORD, b);
                        } else {
                            lexError(b);
                        }
                    }
                }
                return true;
            }
            case RECOVERY -> {
                boolean resync = (b < 0x20 && b != '\t')
                        || b >= 0xfe
                        || b == '['
                        || b == ']'
                        || b == '{'
                        || b == '}'
                        || b == ':'
                        || b == ',';
                if (resync) {
                    state = State.START;
                    return false;
                }
                return true;
            }
            case DQ_STRING, SQ_STRING -> {
                int quote = state == State.DQ_STRING ? '"' : '\'';
                if (b < 0x20 || b > 0xfd) {
                    lexError(b);
                } else if (b == quote) {
                    token.append(b);
                    emit(Kind.STRING);
                } else {
                    token.append(b);
                    if (b == '\\') {
                        state = state == State.DQ_STRING ? State.DQ_ESCAPE : State.SQ_ESCAPE;
                    }
                }
                return true;
            }
            case DQ_ESCAPE, SQ_ESCAPE -> {
                if (b < 0x20 || b > 0xfd) {
                    lexError(b);
                } else {
                    token.append(b);
                    state = state == State.DQ_ESCAPE ? State.DQ_STRING : State.SQ_STRING;
                }
                return true;
            }
            case ZERO -> {
                if (isDigit(b)) {
                    lexError(b);
                    return true;
                }
                if (b == '.') {
                    continueWith(State.MANTISSA, b);
                    return true;
                }
                return emitBefore(Kind.INTEGER);
            }
            case DIGITS -> {
                if (isDigit(b)) {
                    token.append(b);
                    return true;
                }
                if (b == 'e' || b == 'E') {
                    continueWith(State.EXP_E, b);
                    return true;
                }
                if (b == '.') {
                    continueWith(State.MANTISSA, b);
                    return true;
                }
                return emitBefore(Kind.INTEGER);
            }
            case SIGN -> {
                if (b == '0') {
                    continueWith(State.ZERO, b);
                } else if (b >= '1' && b <= '9') {
                    continueWith(State.DIGITS, b);
                } else {
                    lexError(b);
                }
                return true;
            }
            case MANTISSA -> {
                if (isDigit(b)) {
                    continueWith(State.MANTISSA_DIGITS, b);
                } else {
                    lexError(b);
                }
                return true;
            }
            case MANTISSA_DIGITS -> {
                if (isDigit(b)) {
                    token.append(b);
                    return true;
                }
                if (b == 'e' || b == 'E') {
                    continueWith(State.EXP_E, b);
                    return true;
                }
                return emitBefore(Kind.FLOAT);
            }
            case EXP_E -> {
                if (b == '+' || b == '-') {
                    continueWith(State.EXP_SIGN, b);
                } else if (isDigit(b)) {
                    continueWith(State.EXP_DIGITS, b);
                } else {
                    lexError(b);
                }
                return true;
            }
            case EXP_SIGN -> {
                if (isDigit(b)) {
                    continueWith(State.EXP_DIGITS, b);
                } else {
                    lexError(b);
                }
                return true;
            }
            case EXP_DIGITS -> {
                if (isDigit(b)) {
                    token.append(b);
                    return true;
                }
                return emitBefore(Kind.FLOAT);
            }
            case KEYWORD -> {
                if (b >= 'a' && b <= 'z') {
                    token.append(b);
                    return true;
                }
                return emitBefore(Kind.KEYWORD);
            }
        }
        throw new IllegalStateException("lexer state " + state);
    }

    private static boolean isDigit(int b) {
        return b >= '0' && b <= '9';
    }

    private void begin(State next, int b) {
        token.append(b);
        state = next;
    }

    private void continueWith(State next, int b) {
        token.append(b);
        state = next;
    }

    private void single(Kind kind, int b) {
        token.append(b);
        emit(kind);
    }

    /** A token ended because {@code b} cannot extend it: emit it and let START see {@code b}. */
    private boolean emitBefore(Kind kind) {
        emit(kind);
        return false;
    }

    private void emit(Kind kind) {
        Token t = new Token(kind, token.toArray());
        token.clear();
        state = State.START;
        process(t);
    }

    /** The offending byte belongs to the reported token, as in QEMU ("stray '-}'"). */
    private void lexError(int b) {
        token.append(b);
        String text = Utf8.lenientDecode(token.toArray());
        token.clear();
        state = State.RECOVERY;
        fail("JSON parse error, stray '" + text + "'");
    }

    private void process(Token t) {
        switch (t.kind()) {
            case LCURLY -> braces++;
            case RCURLY -> braces--;
            case LSQUARE -> brackets++;
            case RSQUARE -> brackets--;
            default -> {}
        }
        tokens.add(t);
        tokenSize += t.text().length;
        if (braces < 0 || brackets < 0 || (braces == 0 && brackets == 0)) {
            List<Token> message = tokens;
            reset();
            Object value;
            try {
                value = JsonParser.parse(message);
            } catch (JsonParser.ParseError e) {
                sink.error(e.getMessage());
                return;
            }
            sink.value(value);
            return;
        }
        if (tokenSize > MAX_TOKEN_SIZE) {
            fail("JSON token size limit exceeded");
        } else if (tokens.size() > MAX_TOKEN_COUNT) {
            fail("JSON token count limit exceeded");
        } else if (braces + brackets > MAX_NESTING) {
            fail("JSON nesting depth limit exceeded");
        }
    }

    private void fail(String message) {
        reset();
        sink.error(message);
    }

    private void reset() {
        tokens = new ArrayList<>();
        tokenSize = 0;
        braces = 0;
        brackets = 0;
    }

    /** A growable byte buffer for the token being lexed. */
    private static final class ByteText {
        private byte[] bytes = new byte[64];
        private int length;

        void append(int b) {
            if (length == bytes.length) {
                bytes = java.util.Arrays.copyOf(bytes, bytes.length * 2);
            }
            bytes[length++] = (byte) b;
        }

        int length() {
            return length;
        }

        byte[] toArray() {
            return java.util.Arrays.copyOf(bytes, length);
        }

        void clear() {
            length = 0;
            if (bytes.length > 4096) {
                bytes = new byte[64]; // do not keep a huge buffer after one big token
            }
        }
    }
}
