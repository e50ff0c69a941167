package dev.strata.qmp;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.qmp.commands.ControlCommands;
import dev.strata.qmp.schema.Qapi;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The QMP wire protocol over a real UNIX socket, one test per error path, each followed by a
 * command that must still work. Expected texts were recorded from qemu-storage-daemon 7.2 for the
 * same input (the x-test-* commands have the argument shapes of block-dirty-bitmap-add and -merge,
 * on which the texts were recorded).
 */
class QmpProtocolTest {
    /** The shape of BlockDirtyBitmapAdd. */
    record AddArguments(
            String node,
            String name,
            @Qapi.Optional @Qapi.Int(Qapi.IntKind.UINT32) Long granularity,
            @Qapi.Default("false") boolean persistent,
            @Qapi.Default("false") boolean disabled) {}

    record Pair(String node, String name) implements Source {}

    @Qapi.Unboxed
    record Local(String name) implements Source {}

    /** The shape of BlockDirtyBitmapOrStr. */
    @Qapi.Name("BlockDirtyBitmapOrStr")
    sealed interface Source permits Local, Pair {}

    /** The shape of BlockDirtyBitmapMerge. */
    record MergeArguments(String node, String target, List<Source> bitmaps) {}

    @TempDir
    Path dir;

    private Qmp qmp;
    private Path socket;
    private final AtomicBoolean quit = new AtomicBoolean();
    private final List<Object> seen = new ArrayList<>();

    @BeforeEach
    void start() throws IOException {
        Commands commands = new Commands();
        Qmp.VersionInfo version = new Qmp.VersionInfo(new Qmp.VersionTriple(7, 2, 0), "strata-test");
        ControlCommands.register(commands, version, () -> quit.set(true));
        commands.add("x-test-add", AddArguments.class, "{}", (a, ctx) -> {
            seen.add(a);
            return null;
        });
        commands.add("x-test-merge", MergeArguments.class, "{}", (a, ctx) -> {
            seen.add(a);
            return null;
        });
        qmp = new Qmp(commands, version);
        socket = dir.resolve("qmp.sock");
        qmp.listen(socket, false);
    }

    @AfterEach
    void stop() {
        qmp.close();
    }

    private static void assertStillWorks(QmpClient c) throws IOException {
        Map<String, Object> r = c.execute("query-version", null);
        assertThat(r).containsKey("return");
    }

    @Test
    void greetingThenNegotiationThenCommands() throws IOException {
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(socket)))
                .isEqualTo("rw-------");
        try (QmpClient c = QmpClient.connect(socket)) {
            assertThat(c.greeting())
                    .isEqualTo(Map.of(
                            "QMP",
                            Map.of(
                                    "version",
                                    Map.of(
                                            "qemu",
                                            Map.of("major", 7L, "minor", 2L, "micro", 0L),
                                            "package",
                                            "strata-test"),
                                    "capabilities",
                                    List.of("oob"))));
            assertThat(QmpClient.errorOf(c.execute("query-version")))
                    .isEqualTo("CommandNotFound: Expecting capabilities negotiation with 'qmp_capabilities'");
            assertThat(QmpClient.errorOf(c.execute("no-such-command")))
                    .isEqualTo("CommandNotFound: Expecting capabilities negotiation with 'qmp_capabilities'");
            c.negotiate();
            assertThat(c.error("qmp_capabilities", null))
                    .isEqualTo("CommandNotFound: Capabilities negotiation is already complete, command ignored");
            assertStillWorks(c);
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> names = (List<Map<String, Object>>) c.ok("query-commands", null);
            assertThat(names)
                    .extracting(m -> m.get("name"))
                    .contains("qmp_capabilities", "query-version", "query-commands", "quit", "x-test-add");
        }
    }

    @Test
    void idIsEchoedVerbatimOnSuccessAndError() throws IOException {
        try (QmpClient c = QmpClient.connect(socket)) {
            c.negotiate();
            c.sendRaw("{\"execute\":\"query-version\",\"id\":{\"a\":[1,\"x\",null]}}\n");
            assertThat(c.readReply()).containsEntry("id", Map.of("a", java.util.Arrays.asList(1L, "x", null)));
            c.sendRaw("{\"execute\":\"nope\",\"id\":5}\n");
            assertThat(c.readReply())
                    .isEqualTo(Map.of(
                            "id",
                            5L,
                            "error",
                            Map.of("class", "CommandNotFound", "desc", "The command nope has not been found")));
            c.sendRaw("{'execute':'query-version', 'id':'it\\'s'}\n");
            assertThat(c.readReply()).containsEntry("id", "it's");
        }
    }

    /** Raw input, the error QEMU gives (no id: these never became requests, or had none). */
    @ParameterizedTest(name = "{0}")
    @CsvSource(
            delimiter = '|',
            quoteCharacter = '`',
            value = {
                "{\"execute\": }|GenericError: JSON parse error, expecting value",
                "xyz|GenericError: JSON parse error, invalid keyword 'xyz'",
                "{\"a\":1,\"a\":2}|GenericError: JSON parse error, duplicate key",
                "[1]|GenericError: QMP input must be a JSON object",
                "3|GenericError: QMP input must be a JSON object",
                "\"x\"|GenericError: QMP input must be a JSON object",
                "{}|GenericError: QMP input lacks member 'execute'",
                "{\"execute\":1}|GenericError: QMP input member 'execute' must be a string",
                "{\"execute\":\"a\",\"exec-oob\":\"b\"}|GenericError: QMP input member 'exec-oob' is unexpected",
                "{\"execute\":\"a\",\"arguments\":[]}|GenericError: QMP input member 'arguments' must be an object",
                "{\"execute\":\"a\",\"foo\":1}|GenericError: QMP input member 'foo' is unexpected",
                "{\"execute\":\"query-version\",\"arguments\":{\"x\":1}}|GenericError: Parameter 'x' is unexpected",
            })
    void everyMalformedRequestGetsQemusErrorAndTheSessionGoesOn(String input, String expected) throws IOException {
        try (QmpClient c = QmpClient.connect(socket)) {
            c.negotiate();
            c.sendRaw(input + "\n");
            assertThat(QmpClient.errorOf(c.readReply())).isEqualTo(expected);
            assertStillWorks(c);
        }
    }

    @Test
    void aStrayByteAbandonsAnUnfinishedRequest() throws IOException {
        try (QmpClient c = QmpClient.connect(socket)) {
            c.negotiate();
            c.sendRaw("{\"execute\":\"query-version\", \"arguments\": {[[[\n");
            c.sendRaw(new byte[] {1});
            assertThat(QmpClient.errorOf(c.readReply())).isEqualTo("GenericError: JSON parse error, stray '\u0001'");
            assertStillWorks(c);
            c.sendRaw(new byte[] {(byte) 0xff});
            assertThat(QmpClient.errorOf(c.readReply())).isEqualTo("GenericError: JSON parse error, stray '\ufffd'");
            assertStillWorks(c);
        }
    }

    /** Arguments, the error QEMU 7.2 gives for them on block-dirty-bitmap-add. */
    @ParameterizedTest(name = "{0}")
    @CsvSource(
            delimiter = '|',
            quoteCharacter = '`',
            value = {
                "{\"node\":\"drive0\"}|Parameter 'name' is missing",
                "{\"node\":\"drive0\",\"name\":1}|Invalid parameter type for 'name', expected: string",
                "{\"node\":\"d\",\"name\":\"b\",\"granularity\":\"x\"}|Parameter 'granularity' expects uint64",
                "{\"node\":\"d\",\"name\":\"b\",\"granularity\":1.5}|Parameter 'granularity' expects uint64",
                "{\"node\":\"d\",\"name\":\"b\",\"granularity\":-1}|Parameter 'granularity' expects uint32_t",
                "{\"node\":\"d\",\"name\":\"b\",\"granularity\":4294967296}|Parameter 'granularity' expects uint32_t",
                "{\"node\":\"d\",\"name\":\"b\",\"persistent\":\"yes\"}|Invalid parameter type for 'persistent', expected: boolean",
                "{\"node\":\"d\",\"name\":\"b\",\"bogus\":1}|Parameter 'bogus' is unexpected",
            })
    void argumentsAreCheckedAgainstTheDeclaration(String arguments, String expected) throws IOException {
        try (QmpClient c = QmpClient.connect(socket)) {
            c.negotiate();
            c.sendRaw("{\"execute\":\"x-test-add\",\"arguments\":" + arguments + "}\n");
            assertThat(QmpClient.errorOf(c.readReply())).isEqualTo("GenericError: " + expected);
            assertThat(seen).as("a refused command never runs").isEmpty();
            assertStillWorks(c);
        }
    }

    @Test
    void defaultsAndNestedPathsFollowTheDeclaration() throws IOException {
        try (QmpClient c = QmpClient.connect(socket)) {
            c.negotiate();
            c.ok("x-test-add", Map.of("node", "d", "name", "b", "granularity", 4294967295L));
            assertThat(seen).containsExactly(new AddArguments("d", "b", 4294967295L, false, false));
            assertThat(c.error(
                            "x-test-merge",
                            Map.of("node", "d", "target", "t", "bitmaps", List.of(Map.of("node", "f0")))))
                    .isEqualTo("GenericError: Parameter 'bitmaps[0].name' is missing");
            assertThat(c.error("x-test-merge", Map.of("node", "d", "target", "t", "bitmaps", "b1")))
                    .isEqualTo("GenericError: Invalid parameter type for 'bitmaps', expected: array");
            // QEMU 7.2 names this 'null' (a bug fixed later); Strata gives the path
            assertThat(c.error("x-test-merge", Map.of("node", "d", "target", "t", "bitmaps", List.of(1L))))
                    .isEqualTo(
                            "GenericError: Invalid parameter type for 'bitmaps[0]', expected: BlockDirtyBitmapOrStr");
            c.ok(
                    "x-test-merge",
                    Map.of("node", "d", "target", "t", "bitmaps", List.of("b1", Map.of("node", "f0", "name", "b0"))));
            assertThat(seen.getLast())
                    .isEqualTo(new MergeArguments("d", "t", List.of(new Local("b1"), new Pair("f0", "b0"))));
            assertStillWorks(c);
        }
    }

    @Test
    void outOfBandNeedsTheCapabilityAndACommandThatAllowsIt() throws IOException {
        try (QmpClient c = QmpClient.connect(socket)) {
            assertThat(c.execute("qmp_capabilities", Map.of("enable", List.of("oob"))))
                    .containsEntry("return", Map.of());
            c.sendRaw("{\"exec-oob\":\"query-version\",\"id\":1}\n");
            assertThat(c.readReply())
                    .isEqualTo(Map.of(
                            "id",
                            1L,
                            "error",
                            Map.of("class", "GenericError", "desc", "The command query-version does not support OOB")));
            assertStillWorks(c);
        }
        try (QmpClient c = QmpClient.connect(socket)) {
            assertThat(c.error("qmp_capabilities", Map.of("enable", List.of("bogus"))))
                    .isEqualTo("GenericError: Parameter 'enable[0]' does not accept value 'bogus'");
            c.negotiate();
            assertStillWorks(c);
        }
    }

    @Test
    void eventsGoToEveryNegotiatedSessionAndOnlyThere() throws IOException {
        try (QmpClient a = QmpClient.connect(socket);
                QmpClient b = QmpClient.connect(socket);
                QmpClient waiting = QmpClient.connect(socket)) {
            a.negotiate();
            b.negotiate();
            qmp.emit("TEST_EVENT", Map.of("n", 1L));
            for (QmpClient c : List.of(a, b)) {
                List<Map<String, Object>> events = c.events(1, 5_000);
                assertThat(events).hasSize(1);
                Map<String, Object> e = events.getFirst();
                assertThat(e).containsEntry("event", "TEST_EVENT").containsEntry("data", Map.of("n", 1L));
                @SuppressWarnings("unchecked")
                Map<String, Object> ts = (Map<String, Object>) e.get("timestamp");
                assertThat((Long) ts.get("seconds")).isPositive();
                assertThat((Long) ts.get("microseconds")).isBetween(0L, 999_999L);
            }
            assertThat(waiting.events(1, 300))
                    .as("not negotiated yet: no events")
                    .isEmpty();
            waiting.negotiate();
            assertStillWorks(waiting);
        }
    }

    @Test
    void manySessionsAtOnce() throws Exception {
        int n = 8;
        CountDownLatch done = new CountDownLatch(n);
        List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
        for (int i = 0; i < n; i++) {
            Thread.ofVirtual().start(() -> {
                try (QmpClient c = QmpClient.connect(socket)) {
                    c.negotiate();
                    for (int k = 0; k < 50; k++) {
                        Map<String, Object> args = new LinkedHashMap<>();
                        args.put("node", "d");
                        args.put("name", "b" + k);
                        c.ok("x-test-add", args);
                        assertStillWorks(c);
                    }
                } catch (Throwable t) {
                    failures.add(t);
                } finally {
                    done.countDown();
                }
            });
        }
        done.await();
        assertThat(failures).isEmpty();
    }

    @Test
    void quitRepliesThenShutsDown() throws IOException {
        try (QmpClient c = QmpClient.connect(socket)) {
            c.negotiate();
            assertThat(c.ok("quit", null)).isEqualTo(Map.of());
        }
        long deadline = System.currentTimeMillis() + 5_000;
        while (!quit.get() && System.currentTimeMillis() < deadline) {
            Thread.onSpinWait();
        }
        assertThat(quit).isTrue();
    }

    /** Bytes recorded from qemu-storage-daemon 7.2 with --monitor chardev=c,pretty=on. */
    @Test
    void prettyMonitorsIndentAsQemuDoes() throws IOException {
        Path prettySocket = dir.resolve("pretty.sock");
        qmp.listen(prettySocket, true);
        try (java.nio.channels.SocketChannel ch =
                java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            ch.connect(java.net.UnixDomainSocketAddress.of(prettySocket));
            String greeting = readUntil(ch, "}\r\n}\r\n");
            assertThat(greeting).startsWith("{\r\n    \"QMP\": {\r\n        \"version\": {\r\n");
            ch.write(java.nio.ByteBuffer.wrap("{\"execute\":\"qmp_capabilities\"}\n".getBytes()));
            assertThat(readUntil(ch, "}\r\n}\r\n")).isEqualTo("{\r\n    \"return\": {\r\n    }\r\n}\r\n");
            ch.write(java.nio.ByteBuffer.wrap("{\"execute\":\"nope\"}\n".getBytes()));
            assertThat(readUntil(ch, "}\r\n}\r\n"))
                    .isEqualTo("{\r\n    \"error\": {\r\n        \"class\": \"CommandNotFound\",\r\n"
                            + "        \"desc\": \"The command nope has not been found\"\r\n    }\r\n}\r\n");
        }
    }

    private static String readUntil(java.nio.channels.SocketChannel ch, String end) throws IOException {
        StringBuilder sb = new StringBuilder();
        java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(1);
        while (!sb.toString().endsWith(end)) {
            b.clear();
            if (ch.read(b) < 0) {
                break;
            }
            sb.append((char) b.get(0));
        }
        return sb.toString();
    }
}
