package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.assertSame;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.json.Json;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The seed document's backup story, with its own JSON: the examples are cut out of the seed's
 * text (a copy in test resources) and sent as printed, except that target file names are made
 * absolute in the test's directory. Guest writes go in between, and every backup (each chain's
 * top) is compared with {@code qemu-img compare} to a snapshot of the disk taken when its job
 * started.
 */
class SeedBackupReplayTest {
    @TempDir
    Path dir;

    BackupFixture f;

    @AfterEach
    void stop() throws IOException {
        if (f != null) {
            f.close();
        }
    }

    /** The requests of the seed's reStructuredText version, in document order. */
    static List<String> seedRequests() throws IOException {
        String text;
        try (InputStream in = SeedBackupReplayTest.class.getResourceAsStream("seed/bitmaps-patch.txt")) {
            text = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        int rst = text.indexOf("+++ b/docs/interop/bitmaps.rst");
        StringBuilder doc = new StringBuilder();
        for (String line : text.substring(rst).split("\n")) {
            if (line.startsWith("+")) {
                doc.append(line, 1, line.length()).append('\n');
            }
        }
        List<String> out = new ArrayList<>();
        String s = doc.toString();
        for (int i = s.indexOf("{ \"execute\""); i >= 0; i = s.indexOf("{ \"execute\"", i + 1)) {
            out.add(s.substring(i, matchingBrace(s, i) + 1));
        }
        return out;
    }

    private static int matchingBrace(String s, int open) {
        int depth = 0;
        boolean inString = false;
        for (int i = open; i < s.length(); i++) {
            char c = s.charAt(i);
            if (inString) {
                if (c == '\\') {
                    i++;
                } else if (c == '"') {
                    inString = false;
                }
            } else if (c == '"') {
                inString = true;
            } else if (c == '{') {
                depth++;
            } else if (c == '}' && --depth == 0) {
                return i;
            }
        }
        throw new IllegalArgumentException("unbalanced JSON at " + open);
    }

    /** The request with its target files placed in the test's directory. */
    private String local(String request) {
        return request.replaceAll("\"target\": \"(/path/to/)?([^\"]+)\"", "\"target\": \"" + dir + "/$2\"");
    }

    private Map<String, Object> send(String request) throws IOException {
        f.qmp.sendRaw(local(request) + "\n");
        return f.qmp.readReply();
    }

    private void backup(String request, String... devices) throws IOException {
        assertThat(send(request)).as(request).isEqualTo(Map.of("return", Map.of()));
        for (String d : devices) {
            Map<String, Object> done = f.awaitEvent("BLOCK_JOB_COMPLETED", d);
            assertThat(done).as("%s: %s", d, done).doesNotContainKey("error");
            assertThat(done.get("offset")).isEqualTo(done.get("len"));
        }
    }

    /**
     * The story on nodes named drive0 and drive1 (qemu-storage-daemon's way), and on drives with
     * those ids over nodes named node0 and node1 (a QEMU VM's way, {@code --drive}).
     */
    @ParameterizedTest
    @ValueSource(booleans = {false, true})
    void theSeedsBackupStory(boolean drives) throws Exception {
        Interop.require("qemu-img");
        f = new BackupFixture(dir, drives);
        seedStory();
    }

    @Test
    void theSeedsExamplesAreThere() throws IOException {
        List<String> r = seedRequests();
        assertThat(r).hasSize(12);
        assertThat(r.stream().filter(x -> x.contains("\"drive-backup\"") || x.contains("transaction")))
                .hasSize(8);
    }

    private void seedStory() throws Exception {
        List<String> r = seedRequests();
        String newChain = r.get(4);
        String anchor = r.get(5);
        String firstIncremental = r.get(6);
        String secondIncremental = r.get(7);
        String failing = r.get(8);
        String retry = r.get(9);
        String twoDrives = r.get(10);
        String grouped = r.get(11);
        assertThat(Json.parse(newChain.replace("]\n", "]"))).isNotNull();

        // a new chain: bitmap0 and a full backup in one transaction
        Path s0 = f.snapshot("drive0", "s0.raw");
        backup(newChain, "drive0");
        assertSame(s0, dir.resolve("full_backup.img"));
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("count", 0L);

        // first and second incremental on top of it
        f.randomWrites("drive0", 1, 40);
        long dirty = (Long) f.bitmap("drive0", "bitmap0").get("count");
        assertThat(dirty).isPositive();
        Path s1 = f.snapshot("drive0", "s1.raw");
        f.createQcow2("incremental.0.img", "full_backup.img");
        backup(firstIncremental, "drive0");
        assertSame(s1, dir.resolve("incremental.0.img"));
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("count", 0L);
        assertThat(allocatedBytes("incremental.0.img")).isEqualTo(dirty);

        f.randomWrites("drive0", 2, 40);
        Path s2 = f.snapshot("drive0", "s2.raw");
        f.createQcow2("incremental.1.img", "incremental.0.img");
        backup(secondIncremental, "drive0");
        assertSame(s2, dir.resolve("incremental.1.img"));

        // a new anchor point: clear bitmap0 and a new full backup
        f.randomWrites("drive0", 3, 20);
        Path s3 = f.snapshot("drive0", "s3.raw");
        backup(anchor, "drive0");
        assertSame(s3, dir.resolve("new_full_backup.img"));
        assertThat(f.bitmap("drive0", "bitmap0")).containsEntry("count", 0L);

        // the error example's requests (the target does not fail here: see DaemonBackupTest for that);
        // its second attempt goes on top of the first, since the first succeeded and reset bitmap0
        f.randomWrites("drive0", 4, 20);
        f.createQcow2("incremental.0.img", "new_full_backup.img");
        Path s4 = f.snapshot("drive0", "s4.raw");
        backup(failing, "drive0");
        assertSame(s4, dir.resolve("incremental.0.img"));
        Files.move(dir.resolve("incremental.0.img"), dir.resolve("attempt1.img"));
        f.randomWrites("drive0", 5, 20);
        Path s5 = f.snapshot("drive0", "s5.raw");
        f.createQcow2("incremental.0.img", "attempt1.img");
        backup(retry, "drive0");
        assertSame(s5, dir.resolve("incremental.0.img"));

        // two drives: bitmap1 and a full backup of drive1 first (not in the seed), then both examples
        f.qmp.ok(
                "transaction",
                BackupFixture.args(
                        "actions",
                        List.of(
                                BackupFixture.args(
                                        "type",
                                        "block-dirty-bitmap-add",
                                        "data",
                                        BackupFixture.args("node", "drive1", "name", "bitmap1")),
                                BackupFixture.args(
                                        "type",
                                        "drive-backup",
                                        "data",
                                        BackupFixture.args(
                                                "device",
                                                "drive1",
                                                "target",
                                                dir.resolve("d1-full.qcow2").toString(),
                                                "sync",
                                                "full",
                                                "format",
                                                "qcow2")))));
        f.awaitEvent("BLOCK_JOB_COMPLETED", "drive1");
        f.randomWrites("drive0", 6, 20);
        f.randomWrites("drive1", 7, 20);
        Path d0 = f.snapshot("drive0", "d0.snap");
        Path d1 = f.snapshot("drive1", "d1.snap");
        f.createQcow2("d0-incr-1.qcow2", "incremental.0.img");
        f.createQcow2("d1-incr-1.qcow2", "d1-full.qcow2");
        backup(twoDrives, "drive0", "drive1");
        assertSame(d0, dir.resolve("d0-incr-1.qcow2"));
        assertSame(d1, dir.resolve("d1-incr-1.qcow2"));

        f.randomWrites("drive0", 8, 20);
        f.randomWrites("drive1", 9, 20);
        Path g0 = f.snapshot("drive0", "g0.snap");
        Path g1 = f.snapshot("drive1", "g1.snap");
        Files.move(dir.resolve("d0-incr-1.qcow2"), dir.resolve("d0-incr-0.qcow2"));
        Files.move(dir.resolve("d1-incr-1.qcow2"), dir.resolve("d1-incr-0.qcow2"));
        f.createQcow2("d0-incr-1.qcow2", "d0-incr-0.qcow2");
        f.createQcow2("d1-incr-1.qcow2", "d1-incr-0.qcow2");
        backup(grouped, "drive0", "drive1");
        assertSame(g0, dir.resolve("d0-incr-1.qcow2"));
        assertSame(g1, dir.resolve("d1-incr-1.qcow2"));
        f.awaitNoJobs();
    }

    /** Bytes the image itself holds (data in its top layer), from qemu-img map. */
    @SuppressWarnings("unchecked")
    private long allocatedBytes(String image) throws Exception {
        Interop.Result r = Interop.qemuImg(
                        "map", "--output=json", dir.resolve(image).toString())
                .assertOk();
        long n = 0;
        for (Object o : (List<Object>) Json.parse(r.stdout())) {
            Map<String, Object> m = (Map<String, Object>) o;
            if (((Number) m.get("depth")).longValue() == 0 && Boolean.TRUE.equals(m.get("data"))) {
                n += ((Number) m.get("length")).longValue();
            }
        }
        return n;
    }
}
