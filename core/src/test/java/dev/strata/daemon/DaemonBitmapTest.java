package dev.strata.daemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.qmp.QmpClient;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The bitmap commands of an in-process daemon over its QMP socket: the seed's examples verbatim,
 * QEMU's refusals (texts recorded from qemu-storage-daemon 7.2 unless a comment says otherwise),
 * and guest writes through human-monitor-command counted against a model.
 */
class DaemonBitmapTest {
    static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    Daemon daemon;
    QmpClient qmp;

    @BeforeEach
    void start() throws Exception {
        Path a = image("a.raw", 64 * MiB);
        Path b = image("b.raw", 64 * MiB);
        Path small = image("small.raw", 32 * MiB);
        Path socket = dir.resolve("qmp.sock");
        daemon = Daemon.start(
                List.of(
                        new Daemon.Blockdev("driver=file,node-name=file0,filename=" + a),
                        new Daemon.Blockdev("driver=raw,node-name=drive0,file=file0"),
                        new Daemon.Blockdev(
                                "{\"driver\":\"raw\",\"node-name\":\"drive1\",\"discard\":\"unmap\",\"file\":{\"driver\":\"file\","
                                        + "\"filename\":\"" + b + "\"}}"),
                        new Daemon.Blockdev("driver=raw,node-name=small,file.driver=file,file.filename=" + small),
                        new Daemon.QmpSocket("unix:" + socket + ",server=on,wait=off")),
                "test");
        qmp = QmpClient.connect(socket).negotiate();
    }

    @AfterEach
    void stop() throws IOException {
        qmp.close();
        daemon.shutdown();
    }

    private Path image(String name, long size) throws IOException {
        Path p = dir.resolve(name);
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(size);
        }
        return p;
    }

    private static Map<String, Object> args(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) {
            m.put((String) kv[i], kv[i + 1]);
        }
        return m;
    }

    private String hmp(String commandLine) throws IOException {
        return (String) qmp.ok("human-monitor-command", args("command-line", commandLine));
    }

    @SuppressWarnings("unchecked")
    private List<Map<String, Object>> bitmapsInQueryBlock(String device) throws IOException {
        for (Object o : (List<Object>) qmp.ok("query-block", null)) {
            Map<String, Object> info = (Map<String, Object>) o;
            if (info.get("device").equals(device)) {
                Map<String, Object> inserted = (Map<String, Object>) info.get("inserted");
                return (List<Map<String, Object>>) inserted.getOrDefault("dirty-bitmaps", List.of());
            }
        }
        throw new AssertionError("no device " + device + " in query-block");
    }

    private Map<String, Object> bitmap(String device, String name) throws IOException {
        return bitmapsInQueryBlock(device).stream()
                .filter(b -> name.equals(b.get("name")))
                .findFirst()
                .orElseThrow();
    }

    private String sha256(String node, String name) throws IOException {
        @SuppressWarnings("unchecked")
        Map<String, Object> r =
                (Map<String, Object>) qmp.ok("x-debug-block-dirty-bitmap-sha256", args("node", node, "name", name));
        return (String) r.get("sha256");
    }

    /** The seed document's requests, byte for byte (multi-line JSON included). */
    @Test
    void theSeedsExamplesWorkVerbatim() throws IOException {
        qmp.sendRaw("""
                { "execute": "block-dirty-bitmap-add",
                  "arguments": {
                    "node": "drive0",
                    "name": "bitmap0"
                  }
                }
                """);
        assertThat(qmp.readReply()).isEqualTo(Map.of("return", Map.of()));
        assertThat(bitmapsInQueryBlock("drive0"))
                .containsExactly(Map.of(
                        "name",
                        "bitmap0",
                        "count",
                        0L,
                        "granularity",
                        65536L,
                        "recording",
                        true,
                        "busy",
                        false,
                        "persistent",
                        false));
        qmp.sendRaw("""
                { "execute": "block-dirty-bitmap-clear",
                  "arguments": {
                    "node": "drive0",
                    "name": "bitmap0"
                  }
                }
                """);
        assertThat(qmp.readReply()).isEqualTo(Map.of("return", Map.of()));
        qmp.sendRaw("""
                { "execute": "block-dirty-bitmap-remove",
                  "arguments": {
                    "node": "drive0",
                    "name": "bitmap0"
                  }
                }
                """);
        assertThat(qmp.readReply()).isEqualTo(Map.of("return", Map.of()));
        qmp.sendRaw("""
                { "execute": "block-dirty-bitmap-add",
                  "arguments": {
                    "node": "drive0",
                    "name": "bitmap0",
                    "granularity": 32768
                  }
                }
                """);
        assertThat(qmp.readReply()).isEqualTo(Map.of("return", Map.of()));
        assertThat(bitmap("drive0", "bitmap0")).containsEntry("granularity", 32768L);
        // bitmaps.rst's current examples: a disabled bitmap, and a merge by name
        qmp.sendRaw("""
                { "execute": "block-dirty-bitmap-add",
                  "arguments": {
                    "node": "drive0",
                    "name": "bitmap1",
                    "granularity": 32768,
                    "disabled": true
                  }
                }
                """);
        assertThat(qmp.readReply()).isEqualTo(Map.of("return", Map.of()));
        assertThat(bitmap("drive0", "bitmap1")).containsEntry("recording", false);
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "new_bitmap"));
        qmp.sendRaw("""
                { "execute": "block-dirty-bitmap-merge",
                  "arguments": {
                    "node": "drive0",
                    "target": "new_bitmap",
                    "bitmaps": [ "bitmap0" ]
                  }
                }
                """);
        assertThat(qmp.readReply()).isEqualTo(Map.of("return", Map.of()));
        qmp.sendRaw("""
                {
                  "execute": "query-block",
                  "arguments": {}
                }
                """);
        assertThat(qmp.readReply()).containsKey("return");
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource(
            delimiter = '|',
            quoteCharacter = '`',
            value = {
                "block-dirty-bitmap-add|{\"node\":\"drive0\",\"name\":\"\"}|Bitmap name cannot be empty",
                "block-dirty-bitmap-add|{\"node\":\"drive0\",\"name\":\"b0\"}|Bitmap already exists: b0",
                "block-dirty-bitmap-add|{\"node\":\"drive0\",\"name\":\"b9\",\"granularity\":1000}|Granularity must be power of 2 and at least 512",
                "block-dirty-bitmap-add|{\"node\":\"drive0\",\"name\":\"b9\",\"granularity\":256}|Granularity must be power of 2 and at least 512",
                "block-dirty-bitmap-add|{\"node\":\"drive0\",\"name\":\"b9\",\"granularity\":4294967295}|Granularity must be power of 2 and at least 512",
                "block-dirty-bitmap-add|{\"node\":\"\",\"name\":\"b9\"}|Cannot find device='' nor node-name=''",
                "block-dirty-bitmap-add|{\"node\":\"nonode\",\"name\":\"b9\"}|Cannot find device='nonode' nor node-name='nonode'",
                "block-dirty-bitmap-add|{\"node\":\"drive0\",\"name\":\"b9\",\"persistent\":true}|Can't store persistent bitmaps to drive0: Operation not supported",
                "x-debug-block-dirty-bitmap-sha256|{\"node\":\"drive0\",\"name\":\"nob\"}|Dirty bitmap 'nob' not found",
                "x-debug-block-dirty-bitmap-sha256|{\"node\":\"nonode\",\"name\":\"nob\"}|Node 'nonode' not found",
                "block-dirty-bitmap-remove|{\"node\":\"drive0\",\"name\":\"nob\"}|Dirty bitmap 'nob' not found",
                "block-dirty-bitmap-remove|{\"node\":\"nonode\",\"name\":\"nob\"}|Node 'nonode' not found",
                "block-dirty-bitmap-remove|{\"node\":\"drive0\"}|Parameter 'name' is missing",
                "block-dirty-bitmap-clear|{\"node\":\"drive0\",\"name\":\"nob\"}|Dirty bitmap 'nob' not found",
                "block-dirty-bitmap-enable|{\"node\":\"nonode\",\"name\":\"b0\"}|Node 'nonode' not found",
                "block-dirty-bitmap-disable|{\"node\":\"drive0\",\"name\":\"nob\"}|Dirty bitmap 'nob' not found",
                "block-dirty-bitmap-merge|{\"node\":\"drive0\",\"target\":\"b0\",\"bitmaps\":[\"nob\"]}|Dirty bitmap 'nob' not found",
                "block-dirty-bitmap-merge|{\"node\":\"drive0\",\"target\":\"b0\",\"bitmaps\":[{\"node\":\"nonode\",\"name\":\"x\"}]}|Node 'nonode' not found",
                "block-dirty-bitmap-merge|{\"node\":\"drive0\",\"target\":\"b0\",\"bitmaps\":[{\"node\":\"file0\"}]}|Parameter 'bitmaps[0].name' is missing",
                "block-dirty-bitmap-merge|{\"node\":\"drive0\",\"target\":\"b0\",\"bitmaps\":\"b1\"}|Invalid parameter type for 'bitmaps', expected: array",
                "block-dirty-bitmap-merge|{\"node\":\"drive0\",\"target\":\"nob\",\"bitmaps\":[\"b0\"]}|Dirty bitmap 'nob' not found",
                // Strata's own text: qemu-storage-daemon 7.2 aborts on an empty list
                "block-dirty-bitmap-merge|{\"node\":\"drive0\",\"target\":\"b0\",\"bitmaps\":[]}|Parameter 'bitmaps' must name at least one bitmap to merge",
                // recorded with two nodes of different sizes
                "block-dirty-bitmap-merge|{\"node\":\"drive0\",\"target\":\"b0\",\"bitmaps\":[{\"node\":\"small\",\"name\":\"s0\"}]}|Bitmaps are of different sizes (destination size is 67108864, source size is 33554432) and can't be merged",
            })
    void refusalsAreQemusAndChangeNothing(String command, String arguments, String expected) throws IOException {
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "b0"));
        qmp.ok("block-dirty-bitmap-add", args("node", "small", "name", "s0"));
        hmp("qemu-io small \"write 0 64k\"");
        hmp("qemu-io drive0 \"write 0 1\"");
        String before = sha256("drive0", "b0");
        qmp.sendRaw("{\"execute\":\"" + command + "\",\"arguments\":" + arguments + "}\n");
        assertThat(QmpClient.errorOf(qmp.readReply())).isEqualTo("GenericError: " + expected);
        assertThat(sha256("drive0", "b0")).as("b0 is unchanged").isEqualTo(before);
        assertThat(bitmapsInQueryBlock("drive0")).extracting(b -> b.get("name")).containsExactly("b0");
    }

    @Test
    void guestWritesThroughQemuIoAreCountedLikeAModel() throws IOException {
        long seed = System.nanoTime();
        SplittableRandom rnd = new SplittableRandom(seed);
        long length = 64 * MiB;
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "g64k"));
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "g4k", "granularity", 4096L));
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "g512", "granularity", 512L));
        List<BitmapModel> models =
                List.of(new BitmapModel(length, 65536), new BitmapModel(length, 4096), new BitmapModel(length, 512));
        List<String> names = List.of("g64k", "g4k", "g512");
        for (int op = 0; op < 60; op++) {
            long len = 1 + rnd.nextLong(3 * 65536);
            long off = rnd.nextLong(length - len);
            String cmd = switch (rnd.nextInt(4)) {
                case 0 -> "write -z " + off + " " + len;
                case 1 -> "discard " + off + " " + len;
                default -> "write -P 0x" + Integer.toHexString(rnd.nextInt(256)) + " " + off + " " + len;
            };
            assertThat(hmp("qemu-io drive0 \"" + cmd + "\""))
                    .as("seed %d: %s", seed, cmd)
                    .isEmpty();
            if (!cmd.startsWith("discard")) {
                // drive0 has QEMU's default discard=ignore: a discard changes nothing
                for (BitmapModel m : models) {
                    m.write(off, len);
                }
            }
        }
        for (int i = 0; i < names.size(); i++) {
            assertThat(bitmap("drive0", names.get(i)))
                    .as("seed %d", seed)
                    .containsEntry("count", models.get(i).count());
            assertThat(sha256("drive0", names.get(i)))
                    .as("seed %d", seed)
                    .isEqualTo(models.get(i).sha256());
        }
        // the file node below saw the same writes but has no bitmap; drive1 saw none
        assertThat(bitmapsInQueryBlock("drive1")).isEmpty();
        // with discard=unmap a discard reaches the disk, so it is tracked
        qmp.ok("block-dirty-bitmap-add", args("node", "drive1", "name", "d"));
        assertThat(hmp("qemu-io drive1 \"discard 1M 64k\"")).isEmpty();
        assertThat(bitmap("drive1", "d")).containsEntry("count", 65536L);
    }

    @Test
    void disabledBitmapsSkipWritesAndClearForgetsThem() throws IOException {
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "b", "disabled", true));
        hmp("qemu-io drive0 \"write 0 64k\"");
        assertThat(bitmap("drive0", "b")).containsEntry("count", 0L).containsEntry("recording", false);
        qmp.ok("block-dirty-bitmap-enable", args("node", "drive0", "name", "b"));
        hmp("qemu-io drive0 \"write 1M 1\"");
        assertThat(bitmap("drive0", "b")).containsEntry("count", 65536L).containsEntry("recording", true);
        qmp.ok("block-dirty-bitmap-disable", args("node", "drive0", "name", "b"));
        hmp("qemu-io drive0 \"write 2M 1\"");
        assertThat(bitmap("drive0", "b")).containsEntry("count", 65536L);
        qmp.ok("block-dirty-bitmap-clear", args("node", "drive0", "name", "b"));
        assertThat(bitmap("drive0", "b")).containsEntry("count", 0L);
    }

    @Test
    void mergeTakesLocalAndExternalSourcesOfAnyGranularity() throws IOException {
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "target"));
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "fine", "granularity", 512L));
        qmp.ok("block-dirty-bitmap-add", args("node", "drive1", "name", "other"));
        hmp("qemu-io drive0 \"write 100k 1\"");
        qmp.ok("block-dirty-bitmap-clear", args("node", "drive0", "name", "target"));
        hmp("qemu-io drive1 \"write 10M 64k\"");
        qmp.ok(
                "block-dirty-bitmap-merge",
                args(
                        "node",
                        "drive0",
                        "target",
                        "target",
                        "bitmaps",
                        List.of("fine", args("node", "drive1", "name", "other"))));
        BitmapModel model = new BitmapModel(64 * MiB, 65536);
        model.write(100 * 1024, 1);
        model.write(10 * MiB, 65536);
        assertThat(bitmap("drive0", "target")).containsEntry("count", model.count());
        assertThat(sha256("drive0", "target")).isEqualTo(model.sha256());
    }

    @Test
    void queryNamedBlockNodesListsEveryNodeNewestFirstWithItsBitmaps() throws IOException {
        qmp.ok("block-dirty-bitmap-add", args("node", "file0", "name", "onfile"));
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "first"));
        qmp.ok("block-dirty-bitmap-add", args("node", "drive0", "name", "second"));
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> nodes = (List<Map<String, Object>>) qmp.ok("query-named-block-nodes", null);
        List<Object> names = new ArrayList<>();
        for (Map<String, Object> n : nodes) {
            names.add(n.get("node-name"));
        }
        assertThat(names).hasSize(6).startsWith("small").contains("drive1", "drive0", "file0");
        assertThat(names.get(1).toString()).startsWith("#block");
        Map<String, Object> drive0 = nodes.stream()
                .filter(n -> n.get("node-name").equals("drive0"))
                .findFirst()
                .orElseThrow();
        assertThat(drive0).containsEntry("drv", "raw").containsEntry("ro", false);
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> bitmaps = (List<Map<String, Object>>) drive0.get("dirty-bitmaps");
        assertThat(bitmaps).extracting(b -> b.get("name")).containsExactly("second", "first");
        Map<String, Object> drive1 = nodes.stream()
                .filter(n -> n.get("node-name").equals("drive1"))
                .findFirst()
                .orElseThrow();
        assertThat(drive1).doesNotContainKey("dirty-bitmaps");
        // query-block: the roots only, as drives named by their node-names
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> drives = (List<Map<String, Object>>) qmp.ok("query-block", null);
        assertThat(drives).extracting(d -> d.get("device")).containsExactly("drive0", "drive1", "small");
    }

    @Test
    void humanMonitorCommandAnswersLikeQemuIo() throws IOException {
        assertThat(hmp("qemu-io drive0 \"write -P 0xab 0 512\"")).isEmpty();
        assertThat(hmp("qemu-io drive0 \"read -P 0xab 0 512\"")).isEmpty();
        assertThat(hmp("qemu-io drive0 \"read -P 0xcd 0 1k\""))
                .isEqualTo("Pattern verification failed at offset 0, 1024 bytes\r\n");
        assertThat(hmp("qemu-io drive0 \"write -P 0x1ab 0 512\"")).isEqualTo("0x1ab is not a valid pattern byte\r\n");
        assertThat(hmp("qemu-io drive0 \"write 0\""))
                .isEqualTo("bad argument count 1 to write, expected at least 2 arguments\r\n");
        assertThat(hmp("qemu-io drive0 \"write -P 0xab 64M 512\"")).isEqualTo("write failed: Input/output error\r\n");
        assertThat(hmp("qemu-io drive0 \"write -P 0xab -z 0 512\""))
                .isEqualTo("Only one of -z, -P, and -s can be specified at the same time\r\n");
        assertThat(hmp("qemu-io drive0 \"write -u 0 512\"")).isEqualTo("-u requires -z to be specified\r\n");
        assertThat(hmp("qemu-io drive0 \"write 0 1kk\""))
                .isEqualTo("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- 1kk\r\n");
        assertThat(hmp("qemu-io drive0 \"write 8E 1\"")).isEqualTo("Parsing error: argument too large -- 8E\r\n");
        assertThat(hmp("qemu-io drive0 \"bogus\"")).isEqualTo("command \"bogus\" not found\r\n");
        assertThat(hmp("qemu-io drive0 \"flush x\""))
                .isEqualTo("bad argument count 1 to flush, expected 0 arguments\r\n");
        assertThat(hmp("qemu-io drive0 \"discard 64M 1\"")).isEqualTo("discard failed: Input/output error\r\n");
        assertThat(hmp("qemu-io drive0 \"write 0x1000 1.5k\"")).isEmpty();
        assertThat(hmp("qemu-io drive0 \"read -P 0xcd 4k 1536\"")).isEmpty();
        assertThat(hmp("qemu-io drive0 flush")).isEmpty();
        assertThat(hmp("qemu-io nonode \"flush\""))
                .isEqualTo("Error: Cannot find device='' nor node-name='nonode'\r\n");
        assertThat(hmp("info block")).isEqualTo("unknown command: 'info'\r\n");
    }

    @Test
    void blockdevAddAndDelFollowQemu() throws IOException {
        Path c = image("c.raw", MiB);
        String cfile = c.toString();
        assertThat(qmp.error("blockdev-add", args("driver", "raw", "file", args("driver", "file", "filename", cfile))))
                .isEqualTo("GenericError: 'node-name' must be specified for the root node");
        assertThat(qmp.error("blockdev-add", args("driver", "bogus", "node-name", "d1")))
                .isEqualTo("GenericError: Parameter 'driver' does not accept value 'bogus'");
        assertThat(qmp.error("blockdev-add", args("node-name", "d1")))
                .isEqualTo("GenericError: Parameter 'driver' is missing");
        assertThat(qmp.error(
                        "blockdev-add",
                        args(
                                "driver",
                                "raw",
                                "node-name",
                                "d1",
                                "file",
                                args("driver", "file", "filename", cfile),
                                "bogus",
                                1L)))
                .isEqualTo("GenericError: Parameter 'bogus' is unexpected");
        assertThat(qmp.error(
                        "blockdev-add",
                        args(
                                "driver",
                                "raw",
                                "node-name",
                                "d1",
                                "file",
                                args("driver", "file", "filename", cfile, "bogus", 1L))))
                .isEqualTo("GenericError: Parameter 'file.bogus' is unexpected");
        assertThat(qmp.error("blockdev-add", args("driver", "raw", "node-name", "d3", "file", 5L)))
                .isEqualTo("GenericError: Invalid parameter type for 'file', expected: BlockdevRef");
        assertThat(qmp.error(
                        "blockdev-add",
                        args("driver", "raw", "node-name", "d3", "file", args("driver", "file", "filename", 5L))))
                .isEqualTo("GenericError: Invalid parameter type for 'file.filename', expected: string");
        assertThat(qmp.error(
                        "blockdev-add", args("driver", "raw", "node-name", "d3", "read-only", "yes", "file", "file0")))
                .isEqualTo("GenericError: Invalid parameter type for 'read-only', expected: boolean");
        assertThat(qmp.error("blockdev-add", args("driver", "raw", "node-name", "d3", "file", "nonode")))
                .isEqualTo("GenericError: Cannot find device='nonode' nor node-name='nonode'");
        assertThat(qmp.error(
                        "blockdev-add",
                        args("driver", "raw", "node-name", "1d", "file", args("driver", "file", "filename", cfile))))
                .isEqualTo("GenericError: Invalid node-name: '1d'");
        assertThat(qmp.error(
                        "blockdev-add",
                        args(
                                "driver",
                                "raw",
                                "node-name",
                                "drive0",
                                "file",
                                args("driver", "file", "filename", cfile))))
                .isEqualTo("GenericError: Duplicate nodes with node-name='drive0'");
        assertThat(qmp.error(
                        "blockdev-add",
                        args(
                                "driver",
                                "raw",
                                "node-name",
                                "d1",
                                "file",
                                args(
                                        "driver",
                                        "file",
                                        "filename",
                                        dir.resolve("none.raw").toString()))))
                .isEqualTo("GenericError: Could not open '" + dir.resolve("none.raw") + "': No such file or directory");

        qmp.ok(
                "blockdev-add",
                args("driver", "raw", "node-name", "d1", "file", args("driver", "file", "filename", cfile)));
        qmp.ok("block-dirty-bitmap-add", args("node", "d1", "name", "b"));
        assertThat(hmp("qemu-io d1 \"write 0 4k\"")).isEmpty();
        assertThat(bitmap("d1", "b")).containsEntry("count", 65536L);
        assertThat(qmp.error("blockdev-del", args("node-name", "file0")))
                .isEqualTo("GenericError: Block device file0 is in use");
        assertThat(qmp.error("blockdev-del", args("node-name", "nonode")))
                .isEqualTo("GenericError: Failed to find node with node-name='nonode'");
        qmp.ok("blockdev-del", args("node-name", "d1"));
        assertThat(qmp.error("blockdev-del", args("node-name", "d1")))
                .isEqualTo("GenericError: Failed to find node with node-name='d1'");
        assertThat(hmp("qemu-io d1 \"write 0 4k\"")).isEqualTo("Error: Cannot find device='' nor node-name='d1'\r\n");
        // the deleted node's file can be opened again
        qmp.ok(
                "blockdev-add",
                args("driver", "raw", "node-name", "d1", "file", args("driver", "file", "filename", cfile)));
    }
}
