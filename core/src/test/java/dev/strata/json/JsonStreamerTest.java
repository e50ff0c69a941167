package dev.strata.json;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The streamer against what qemu-storage-daemon 7.2 answered for the same bytes (each expected
 * line below was recorded from it: "v:" a value re-encoded, "e:" an error desc).
 */
class JsonStreamerTest {

    static List<String> run(byte[] input) {
        List<String> out = new ArrayList<>();
        JsonStreamer s = new JsonStreamer(new JsonStreamer.Sink() {
            @Override
            public void value(Object json) {
                out.add("v:" + JsonWriter.write(json));
            }

            @Override
            public void error(String message) {
                out.add("e:" + message);
            }
        });
        s.feed(input, 0, input.length);
        return out;
    }

    static List<String> run(String input) {
        return run(input.getBytes(StandardCharsets.ISO_8859_1));
    }

    @Test
    void valuesComeOutWhenBracesBalance() {
        assertThat(run("{\"execute\":\"query-version\", \"id\":1}{\"execute\":\"x\",\"id\":2}\n"))
                .containsExactly("v:{\"execute\": \"query-version\", \"id\": 1}", "v:{\"execute\": \"x\", \"id\": 2}");
        assertThat(run("{\"execute\":\n\"x\"")).isEmpty();
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(
            delimiter = '|',
            quoteCharacter = '`',
            value = {
                "{\"execute\": }|e:JSON parse error, expecting value",
                "{\"execute\":\"q\" \"x\"}|e:JSON parse error, expected separator in dict",
                "{\"execute\":\"q\",}|e:JSON parse error, expecting value",
                "{1:2}|e:JSON parse error, key is not a string in object",
                "{\"a\":1,\"a\":2}|e:JSON parse error, duplicate key",
                "xyz|e:JSON parse error, invalid keyword 'xyz'",
                "}|e:JSON parse error, expecting value",
                "]|e:JSON parse error, expecting value",
                "[1,2 3]|e:JSON parse error, expected separator in list",
                "[1,]|v:[1]",
                "[1,,]|e:JSON parse error, expecting value",
                "[,1]|e:JSON parse error, expecting value",
                "{\"a\" 1}|e:JSON parse error, missing : in object pair",
                "{\"a\":}|e:JSON parse error, expecting value",
                "\"\\q\"|e:JSON parse error, invalid escape sequence in string",
                "\"\\uFFFF\"|e:JSON parse error, \\uFFFF is not a valid Unicode character",
                "\"\\uFDD0\"|e:JSON parse error, \\uFDD0 is not a valid Unicode character",
                "\"\\ud800\"|e:JSON parse error, \\ud800 is not a valid Unicode character",
                "\"\\ud800\\u0041\"|e:JSON parse error, \\ud800 is not a valid Unicode character",
                "\"\\udc00\"|e:JSON parse error, \\udc00 is not a valid Unicode character",
                "\"\\u00\"|e:JSON parse error, \\u00\" is not a valid Unicode character",
                "{\"id\": 01}|e:JSON parse error, stray '01' && e:JSON parse error, expecting value",
                "{\"id\": -}|e:JSON parse error, stray '-}'",
                "{\"id\": 1.}|e:JSON parse error, stray '1.}'",
                "{\"id\": 1.e5}|e:JSON parse error, stray '1.e' && e:JSON parse error, expecting value",
                "{\"id\": True}|e:JSON parse error, stray 'T' && e:JSON parse error, expecting value",
            })
    void syntaxErrorsAreQemus(String input, String expected) {
        assertThat(run(input + "\n")).containsExactly(expected.split(" && "));
    }

    @Test
    void aStrayByteDropsTheMessageAndRecoversAtTheNextStructuralCharacter() {
        // recorded: the newline inside the string is the stray byte; ':' then resynchronises
        assertThat(run("{\"execute\":\"qmp_capabilities\", \"id\": 1}{\"execute\n\":\"query-version\"}\n"))
                .containsExactly(
                        "v:{\"execute\": \"qmp_capabilities\", \"id\": 1}",
                        "e:JSON parse error, stray '\"execute\n'",
                        "e:JSON parse error, expecting value",
                        "v:\"query-version\"",
                        "e:JSON parse error, expecting value");
        assertThat(run("\u0001{\"execute\":\"q\"}\n"))
                .containsExactly("e:JSON parse error, stray '\u0001'", "v:{\"execute\": \"q\"}");
        assertThat(run(new byte[] {(byte) 0xff})).containsExactly("e:JSON parse error, stray '\ufffd'");
        // an unfinished message is abandoned by a control character, as the QMP spec advises
        assertThat(run("{\"execute\": [[[\n\u0001{\"a\":1}\n"))
                .containsExactly("e:JSON parse error, stray '\u0001'", "v:{\"a\": 1}");
    }

    @Test
    void stringsFollowModifiedUtf8() {
        assertThat(run(bytes("\"a\\u0000b\""))).containsExactly("v:\"a\\u0000b\"");
        assertThat(run(bytes("\"\u00c3\u00a9\""))).containsExactly("v:\"\\u00E9\"");
        assertThat(run(bytes("\"\u00c3\""))).containsExactly("e:JSON parse error, invalid UTF-8 sequence in string");
        assertThat(run(bytes("\"\u00ef\u00bf\u00bf\"")))
                .containsExactly("e:JSON parse error, invalid UTF-8 sequence in string");
        assertThat(run(bytes("\"\u00c0\u0080\""))).containsExactly("v:\"\\u0000\"");
        assertThat(run(bytes("\"\u00ed\u00a0\u0080\"")))
                .containsExactly("e:JSON parse error, invalid UTF-8 sequence in string");
        assertThat(run(bytes("\"\u00f0\u009f\u0098\u0080\""))).containsExactly("v:\"\\uD83D\\uDE00\"");
        assertThat(run(bytes("\"\\u00e9\\ud83d\\ude00\""))).containsExactly("v:\"\\u00E9\\uD83D\\uDE00\"");
        assertThat(run(bytes("'it\\'s'"))).containsExactly("v:\"it's\"");
        assertThat(run(bytes("\"\\b\\f\\n\\r\\t\\/\\\"\\\\\u007f~\"")))
                .containsExactly("v:\"\\b\\f\\n\\r\\t/\\\"\\\\\\u007F~\"");
        assertThat(run(bytes("{\"id\": \"tab\there\"}\n")))
                .containsExactly("e:JSON parse error, stray '\"tab\t'", "e:JSON parse error, expecting value");
    }

    @Test
    void numbersKeepQemusKinds() {
        assertThat(run("[1.5e3, 123456789012345678901234567890, -0, 0.1, -0.0, 18446744073709551615,"
                        + " -9223372036854775809, 1E2, 0.5e-7, 123456789012345678, 1e400]\n"))
                .containsExactly("v:[1500, 1.2345678901234568e+29, 0, 0.10000000000000001, -0, 18446744073709551615,"
                        + " -9.2233720368547758e+18, 100, 4.9999999999999998e-08, 123456789012345678, 1e999]");
    }

    @Test
    void limitsEndTheMessageWithQemusError() {
        String deep = "[".repeat(JsonStreamer.MAX_NESTING + 1);
        assertThat(run(deep)).containsExactly("e:JSON nesting depth limit exceeded");
        // after the limit, the rest of the open brackets are a new message; a control byte ends it
        assertThat(run(deep + "\u0001{}"))
                .containsExactly("e:JSON nesting depth limit exceeded", "e:JSON parse error, stray '\u0001'", "v:{}");
    }

    /** Latin-1 characters stand for single bytes, so a test can write raw UTF-8 bytes. */
    private static byte[] bytes(String latin1) {
        return latin1.getBytes(StandardCharsets.ISO_8859_1);
    }
}
