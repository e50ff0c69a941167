package dev.strata.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.json.JsonWriter;
import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.InputStream;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The same QMP script ({@code differential/bitmaps.qmp}, {@code differential/jobs.qmp}) run against
 * qemu-storage-daemon 7.2 (and {@code differential/drives.qmp} against qemu-system-x86_64 7.2) and
 * against Strata, each in its own sandbox with the same nodes; every response must be equal once
 * timestamps, versions, sandbox paths, automatic node names and allocated sizes are masked. Lines
 * the script marks {@code @differs} or {@code @strata-only} are the known differences, each with
 * its reason in the script.
 *
 * <p>Guest writes ({@code !NODE CMD} lines) go through qemu-io over an NBD export of the node on
 * QEMU's side (7.2 has no human-monitor-command) and through human-monitor-command on Strata's.
 */
class QsdDifferentialTest extends QsdSandboxes {
    private static final long MiB = 1 << 20;

    private static void images(Path dir) throws Exception {
        for (var e : Map.of("a.raw", 64 * MiB, "b.raw", 64 * MiB, "small.raw", 32 * MiB, "extra.raw", MiB)
                .entrySet()) {
            try (RandomAccessFile f =
                    new RandomAccessFile(dir.resolve(e.getKey()).toFile(), "rw")) {
                f.setLength(e.getValue());
            }
        }
        for (String q : List.of("q.qcow2", "t0.qcow2", "t1.qcow2", "t2.qcow2")) {
            Interop.qemuImg("create", "-q", "-f", "qcow2", dir.resolve(q).toString(), "64M")
                    .assertOk();
        }
    }

    private static List<String> blockdevs(Path dir) {
        return List.of(
                "driver=file,node-name=file0,filename=" + dir.resolve("a.raw"),
                "driver=raw,node-name=drive0,file=file0",
                "driver=raw,node-name=drive1,discard=unmap,file.driver=file,file.filename=" + dir.resolve("b.raw"),
                "driver=raw,node-name=small,file.driver=file,file.filename=" + dir.resolve("small.raw"),
                "driver=qcow2,node-name=qdrive,file.driver=file,file.filename=" + dir.resolve("q.qcow2"));
    }

    /** One script entry: the text to send (or the guest write), and how to treat its responses. */
    record Step(int line, String text, boolean guestWrite, String differs, boolean strataOnly, boolean settle) {}

    static List<Step> script(String name) throws IOException {
        List<Step> steps = new ArrayList<>();
        String differs = null;
        boolean strataOnly = false;
        boolean settle = false;
        try (InputStream in = QsdDifferentialTest.class.getResourceAsStream("differential/" + name)) {
            String[] lines = new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n");
            for (int i = 0; i < lines.length; i++) {
                String l = lines[i];
                if (l.isBlank() || l.startsWith("#")) {
                    continue;
                }
                if (l.startsWith("@differs ")) {
                    differs = l.substring("@differs ".length());
                    continue;
                }
                if (l.equals("@settle")) {
                    settle = true;
                    continue;
                }
                if (l.startsWith("@strata-only ")) {
                    differs = l.substring("@strata-only ".length());
                    strataOnly = true;
                    continue;
                }
                steps.add(new Step(i + 1, l, l.startsWith("!"), differs, strataOnly, settle));
                differs = null;
                strataOnly = false;
                settle = false;
            }
        }
        return steps;
    }

    /** A side of the comparison: how it runs guest writes, and its sandbox path. */
    interface Side {
        Path dir();

        void guestWrite(QmpClient c, String node, String command) throws Exception;
    }

    @ParameterizedTest
    @ValueSource(strings = {"bitmaps.qmp", "jobs.qmp", "create.qmp", "filenames.qmp", "fleecing.qmp"})
    void qemuAndStrataAnswerTheScriptAlike(String scriptName) throws Exception {
        Interop.require("qemu-storage-daemon");
        Interop.require("qemu-io");
        images(qemuDir);
        images(strataDir);
        List<Step> steps = script(scriptName);

        Path qsdSocket = qemuDir.resolve("qmp.sock");
        Path nbdSocket = qemuDir.resolve("nbd.sock");
        List<String> cmd = new ArrayList<>();
        for (String b : blockdevs(qemuDir)) {
            cmd.addAll(List.of("--blockdev", b));
        }
        cmd.addAll(List.of("--nbd-server", "addr.type=unix,addr.path=" + nbdSocket));
        for (String node : List.of("drive0", "drive1", "small", "qdrive")) {
            cmd.addAll(List.of(
                    "--export", "type=nbd,id=e-" + node + ",node-name=" + node + ",name=" + node + ",writable=on"));
        }
        qsd = startQsd(cmd, qemuDir);

        Path strataSocket = strataDir.resolve("qmp.sock");
        List<Daemon.StartupOption> opts = new ArrayList<>();
        for (String b : blockdevs(strataDir)) {
            opts.add(new Daemon.Blockdev(b));
        }
        opts.add(new Daemon.QmpSocket("unix:" + strataSocket + ",server=on,wait=off"));
        strata = Daemon.start(opts, "differential");

        Side qemu = new Side() {
            @Override
            public Path dir() {
                return qemuDir;
            }

            @Override
            public void guestWrite(QmpClient c, String node, String command) throws Exception {
                Interop.Result r =
                        Interop.qemuIo("-f", "raw", "nbd+unix:///" + node + "?socket=" + nbdSocket, "-c", command);
                r.assertOk();
                assertThat(r.stdout()).as(command).doesNotContain("failed");
            }
        };
        Side mine = hmpSide(strataDir);

        Outcome outcome;
        try (QmpClient q = QmpClient.connect(qsdSocket);
                QmpClient s = QmpClient.connect(strataSocket)) {
            outcome = run(steps, q, qemu, s, mine);
            assertThat(q.ok("quit", null)).isEqualTo(Map.of());
            assertThat(s.ok("quit", null)).isEqualTo(Map.of());
        }
        System.out.println("Known differences:\n" + outcome.known());
        assertThat(outcome.mismatches())
                .as("responses that differ (qemu-storage-daemon log: %s)", log())
                .isEmpty();
        assertThat(qsd.waitFor(10, TimeUnit.SECONDS)).isTrue();
        assertThat(qsd.exitValue()).isZero();
        if (scriptName.equals("create.qmp")) {
            // the images blockdev-create made are the ones QEMU made, byte for byte
            for (String image : List.of("c1.qcow2", "c2.qcow2", "c3.raw")) {
                assertThat(Files.readAllBytes(strataDir.resolve(image)))
                        .as(image)
                        .isEqualTo(Files.readAllBytes(qemuDir.resolve(image)));
            }
        }
    }

    /**
     * Starts qemu-storage-daemon with {@code args} and a QMP monitor on DIR/qmp.sock, its output in
     * DIR/qsd.log; returns once the socket exists.
     */
    static Process startQsd(List<String> args, Path dir) throws Exception {
        Path socket = dir.resolve("qmp.sock");
        List<String> cmd = new ArrayList<>(List.of("qemu-storage-daemon"));
        cmd.addAll(args);
        cmd.addAll(
                List.of("--chardev", "socket,id=c0,path=" + socket + ",server=on,wait=off", "--monitor", "chardev=c0"));
        return startQemu(cmd, socket, dir);
    }

    /** Starts a QEMU program, its output in DIR/qsd.log; returns once its QMP socket exists. */
    static Process startQemu(List<String> cmd, Path socket, Path dir) throws Exception {
        Process p = new ProcessBuilder(cmd)
                .redirectErrorStream(true)
                .redirectOutput(dir.resolve("qsd.log").toFile())
                .start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!Files.exists(socket) && System.nanoTime() < deadline && p.isAlive()) {
            Thread.sleep(10);
        }
        Path log = dir.resolve("qsd.log");
        assertThat(Files.exists(socket))
                .as("%s started: %s", cmd.getFirst(), Files.exists(log) ? Files.readString(log) : "")
                .isTrue();
        return p;
    }

    /**
     * The drives of {@code drives.qmp}, given to qemu-system-x86_64 as {@code -drive} and to
     * Strata as {@code --drive}: a qcow2 drive with a node-name, a raw one without.
     */
    private static List<String> drives(Path dir) {
        return List.of(
                "id=drive0,file=" + dir.resolve("q.qcow2") + ",format=qcow2,node-name=node0,if=none",
                "id=drive1,file=" + dir.resolve("b.raw") + ",format=raw,if=none,cache=unsafe,discard=unmap");
    }

    /**
     * The drives script against qemu-system-x86_64 (the system emulator has drives; no guest is
     * booted) and Strata started with the same {@code --drive} options. Guest writes go through
     * human-monitor-command qemu-io on both sides.
     */
    @org.junit.jupiter.api.Test
    void qemuSystemAndStrataAnswerTheDrivesScriptAlike() throws Exception {
        Interop.require("qemu-system-x86_64");
        images(qemuDir);
        images(strataDir);
        List<Step> steps = script("drives.qmp");

        Path qemuSocket = qemuDir.resolve("qmp.sock");
        List<String> cmd = new ArrayList<>(List.of(
                "qemu-system-x86_64",
                "-machine",
                "none",
                "-nodefaults",
                "-display",
                "none",
                "-qmp",
                "unix:" + qemuSocket + ",server=on,wait=off"));
        for (String d : drives(qemuDir)) {
            cmd.addAll(List.of("-drive", d));
        }
        qsd = startQemu(cmd, qemuSocket, qemuDir);

        Path strataSocket = strataDir.resolve("qmp.sock");
        List<Daemon.StartupOption> opts = new ArrayList<>();
        for (String d : drives(strataDir)) {
            opts.add(new Daemon.DriveOption(d));
        }
        opts.add(new Daemon.QmpSocket("unix:" + strataSocket + ",server=on,wait=off"));
        strata = Daemon.start(opts, "differential");

        Outcome outcome;
        try (QmpClient q = QmpClient.connect(qemuSocket);
                QmpClient s = QmpClient.connect(strataSocket)) {
            outcome = run(steps, q, hmpSide(qemuDir), s, hmpSide(strataDir));
            assertThat(q.ok("quit", null)).isEqualTo(Map.of());
            assertThat(s.ok("quit", null)).isEqualTo(Map.of());
        }
        System.out.println("Known differences:\n" + outcome.known());
        assertThat(outcome.mismatches())
                .as("responses that differ (qemu-system-x86_64 log: %s)", log())
                .isEmpty();
        assertThat(qsd.waitFor(10, TimeUnit.SECONDS)).isTrue();
    }

    /**
     * qemu-storage-daemon's side where a node must not stay exported (an export keeps it from
     * being resized or deleted): each guest write goes through an export made for it on the NBD
     * server at {@code nbdSocket} and removed after it.
     */
    static Side exportingSide(Path dir, Path nbdSocket) {
        return new Side() {
            @Override
            public Path dir() {
                return dir;
            }

            @Override
            public void guestWrite(QmpClient c, String node, String command) throws Exception {
                c.ok(
                        "block-export-add",
                        Map.of("type", "nbd", "id", "w", "node-name", node, "name", node, "writable", true));
                Interop.Result r =
                        Interop.qemuIo("-f", "raw", "nbd+unix:///" + node + "?socket=" + nbdSocket, "-c", command);
                r.assertOk();
                assertThat(r.stdout()).as(command).doesNotContain("failed");
                c.ok("block-export-del", Map.of("id", "w"));
                assertThat(c.events(1, 5000))
                        .as("the write's export is gone")
                        .anyMatch(e -> "BLOCK_EXPORT_DELETED".equals(e.get("event")));
            }
        };
    }

    /** Strata's daemon with these --blockdev options, then {@code extra}, and a QMP socket at DIR/qmp.sock. */
    static Daemon startStrata(List<String> blockdevs, Path dir, Daemon.StartupOption... extra) throws Exception {
        List<Daemon.StartupOption> opts = new ArrayList<>();
        for (String b : blockdevs) {
            opts.add(new Daemon.Blockdev(b));
        }
        opts.addAll(List.of(extra));
        opts.add(new Daemon.QmpSocket("unix:" + dir.resolve("qmp.sock") + ",server=on,wait=off"));
        return Daemon.start(opts, "differential");
    }

    /**
     * Runs {@code steps} against both daemons (their QMP sockets at DIR/qmp.sock), guest writes
     * going through {@code qemu} on qemu-storage-daemon's side and through qemu-io over HMP on
     * Strata's; both quit at the end, and no response may differ but the marked ones.
     */
    static void runAndQuit(List<Step> steps, Path qemuDir, Side qemu, Path strataDir) throws Exception {
        Outcome outcome;
        try (QmpClient q = QmpClient.connect(qemuDir.resolve("qmp.sock"));
                QmpClient s = QmpClient.connect(strataDir.resolve("qmp.sock"))) {
            outcome = run(steps, q, qemu, s, hmpSide(strataDir));
            assertThat(q.ok("quit", null)).isEqualTo(Map.of());
            assertThat(s.ok("quit", null)).isEqualTo(Map.of());
        }
        System.out.println("Known differences:\n" + outcome.known());
        assertThat(outcome.mismatches()).as("responses that differ").isEmpty();
    }

    /** Strata's side: guest writes through human-monitor-command qemu-io. */
    static Side hmpSide(Path dir) {
        return new Side() {
            @Override
            public Path dir() {
                return dir;
            }

            @Override
            public void guestWrite(QmpClient c, String node, String command) throws Exception {
                Object r = c.ok(
                        "human-monitor-command", Map.of("command-line", "qemu-io " + node + " \"" + command + "\""));
                assertThat(r).as(command).isEqualTo("");
            }
        };
    }

    /** What a script's run found: the responses that differ unexpectedly, and the known differences. */
    record Outcome(List<String> mismatches, String known) {}

    /** Runs a script against both daemons (greeting first), comparing every line not marked otherwise. */
    static Outcome run(List<Step> steps, QmpClient q, Side qemu, QmpClient s, Side mine) throws Exception {
        List<String> mismatches = new ArrayList<>();
        StringBuilder known = new StringBuilder();
        compare(0, "greeting", List.<Object>of(q.greeting()), List.<Object>of(s.greeting()), mismatches);
        int sync = 0;
        for (Step step : steps) {
            if (step.guestWrite()) {
                String[] parts = step.text().substring(1).split(" ", 2);
                qemu.guestWrite(q, parts[0], parts[1]);
                mine.guestWrite(s, parts[0], parts[1]);
                continue;
            }
            sync++;
            List<Object> fromStrata = exchange(s, mine, step, sync);
            if (step.strataOnly()) {
                known.append("line ")
                        .append(step.line())
                        .append(" (Strata only: ")
                        .append(step.differs())
                        .append("): ")
                        .append(JsonWriter.write(fromStrata))
                        .append('\n');
                continue;
            }
            List<Object> fromQemu = exchange(q, qemu, step, sync);
            if (step.differs() != null) {
                known.append("line ")
                        .append(step.line())
                        .append(" (differs: ")
                        .append(step.differs())
                        .append(")\n  qemu:   ")
                        .append(JsonWriter.write(fromQemu))
                        .append("\n  strata: ")
                        .append(JsonWriter.write(fromStrata))
                        .append('\n');
                continue;
            }
            compare(step.line(), step.text(), fromQemu, fromStrata, mismatches);
        }
        return new Outcome(mismatches, known.toString());
    }

    private String log() throws IOException {
        Path p = qemuDir.resolve("qsd.log");
        return Files.exists(p) ? Files.readString(p) : "";
    }

    /**
     * Sends one script line and collects every message up to the reply to a marker request sent
     * right after it, so a line may answer with any number of messages (a stray byte gives two).
     */
    static List<Object> exchange(QmpClient c, Side side, Step step, int sync) throws Exception {
        if (step.settle()) {
            return settle(c, side, step.text(), sync);
        }
        String text = step.text().replace("@DIR@", side.dir().toString());
        String marker = "__sync_" + sync;
        c.sendRaw(text + "\n");
        c.sendRaw("{\"execute\":\"query-version\",\"id\":\"" + marker + "\"}\n");
        List<Object> out = new ArrayList<>();
        while (true) {
            Map<String, Object> m = c.readMessage();
            if (marker.equals(m.get("id"))) {
                return out;
            }
            out.add(normalise(m, side.dir().toString()));
        }
    }

    /** Jobs rest (for a script's purposes) when pending, concluded or paused, or when none is left. */
    static final java.util.Set<String> RESTING = java.util.Set.of("pending", "concluded", "paused");

    /**
     * Sends one script line and then polls query-jobs until every job rests, collecting what came
     * meanwhile: the replies in order, then the events in order, grouped by job (a job's events
     * may come before or after the reply that caused them, depending on timing, and two jobs of a
     * transaction run side by side).
     */
    @SuppressWarnings("unchecked")
    static List<Object> settle(QmpClient c, Side side, String line, int sync) throws Exception {
        String text = line.replace("@DIR@", side.dir().toString());
        c.sendRaw(text + "\n");
        List<Object> replies = new ArrayList<>();
        Map<String, List<Object>> events = new java.util.TreeMap<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        for (int poll = 0; ; poll++) {
            String marker = "__settle_" + sync + "_" + poll;
            c.sendRaw("{\"execute\":\"query-jobs\",\"id\":\"" + marker + "\"}\n");
            boolean resting;
            while (true) {
                Map<String, Object> m = c.readMessage();
                if (marker.equals(m.get("id"))) {
                    resting = ((List<Map<String, Object>>) m.get("return"))
                            .stream().allMatch(j -> RESTING.contains(j.get("status")));
                    break;
                }
                Object n = normalise(m, side.dir().toString());
                if (m.containsKey("event")) {
                    Map<String, Object> data = (Map<String, Object>) m.getOrDefault("data", Map.of());
                    Object job = data.containsKey("id") ? data.get("id") : data.get("device");
                    events.computeIfAbsent(String.valueOf(job), k -> new ArrayList<>())
                            .add(n);
                } else {
                    replies.add(n);
                }
            }
            if (resting && poll > 0) {
                break;
            }
            assertThat(System.nanoTime())
                    .as("jobs settle within 30 s: %s", line)
                    .isLessThan(deadline);
            Thread.sleep(resting ? 100 : 10);
        }
        List<Object> out = new ArrayList<>(replies);
        events.values().forEach(out::addAll);
        return out;
    }

    static void compare(int line, String text, List<Object> qemu, List<Object> strata, List<String> out) {
        if (line == 0) {
            qemu = qemu.stream().map(m -> normalise(m, "")).toList();
            strata = strata.stream().map(m -> normalise(m, "")).toList();
        }
        if (!qemu.equals(strata)) {
            out.add("line " + line + ": " + text + "\n  qemu:   " + JsonWriter.write(qemu) + "\n  strata: "
                    + JsonWriter.write(strata));
        }
    }

    /** Masks what is meant to differ between the two daemons. */
    @SuppressWarnings("unchecked")
    static Object normalise(Object v, String dir) {
        return switch (v) {
            case Map<?, ?> m -> {
                if (m.containsKey("qemu") && m.containsKey("package")) {
                    yield "<version>";
                }
                Map<String, Object> out = new LinkedHashMap<>();
                for (var e : ((Map<String, Object>) m).entrySet()) {
                    String k = e.getKey();
                    Object value = e.getValue();
                    if (k.equals("timestamp") || k.equals("actual-size")) {
                        out.put(k, "<masked>");
                    } else {
                        out.put(k, normalise(value, dir));
                    }
                }
                yield out;
            }
            case List<?> l -> l.stream().map(x -> normalise(x, dir)).toList();
            case String s -> {
                String r = dir.isEmpty() ? s : s.replace(dir, "@DIR@");
                yield r.replaceAll("#block[0-9]+", "#block");
            }
            case null -> "<null>";
            default -> v;
        };
    }
}
