package dev.strata.daemon;

import static dev.strata.daemon.BackupFixture.args;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.json.Json;
import dev.strata.qmp.QmpClient;
import dev.strata.testing.Interop;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * blkdebug's config file and request limits beside QEMU: the same node options opened by qemu-io
 * (as a json: filename) and by a Strata daemon (blockdev-add), the same qemu-io commands on both,
 * and the same outcome: refused options with QEMU's words, and errors injected exactly where
 * QEMU's block layer shapes the requests (padding to align, read-modify-write, config rules).
 */
class BlkdebugLimitsTest extends QsdSandboxes {
    /** One case: blkdebug options (without image) and the qemu-io commands to run. */
    private record Case(String blkdebug, List<String> commands) {}

    @Test
    void limitsAndConfigRulesActAsInQemu() throws Exception {
        Interop.require("qemu-io", "qemu-img");
        Path image = strataDir.resolve("d.raw");
        Interop.qemuImg("create", "-q", "-f", "raw", image.toString(), "1M").assertOk();
        Path config = strataDir.resolve("blkdebug.conf");
        Files.writeString(config, """
                # fail reads of the second 4 KiB block with ENOSPC
                [inject-error]
                event = "read_aio"
                errno = "28"
                sector = "8"
                """);
        List<Case> cases = List.of(
                new Case("\"align\":3", List.of("read 0 512")),
                new Case("\"align\":4096,\"max-transfer\":6144", List.of("read 0 512")),
                new Case("\"opt-write-zero\":4096,\"max-write-zero\":6144", List.of("read 0 512")),
                new Case("\"opt-discard\":65536,\"max-discard\":100000", List.of("read 0 512")),
                new Case("\"config\":\"/nonexistent/blkdebug.conf\"", List.of("read 0 512")),
                // the read of 512 bytes at 4608 reaches sector 8 only once padded to 4 KiB
                new Case(
                        "\"inject-error\":[{\"event\":\"read_aio\",\"sector\":8}]",
                        List.of("read 4608 512", "read 0 512")),
                new Case(
                        "\"align\":4096,\"inject-error\":[{\"event\":\"read_aio\",\"sector\":8}]",
                        List.of("read 4608 512", "read 0 512", "read 8192 4096")),
                // an unaligned write is read-modify-written; the read is no read_aio event (the format
                // above fires write_aio), so QEMU's and Strata's rule leave it alone alike
                new Case(
                        "\"align\":4096,\"inject-error\":[{\"event\":\"read_aio\",\"sector\":8}]",
                        List.of("write -P 0x11 4608 512", "write -P 0x22 8192 4096")),
                new Case(
                        "\"align\":4096,\"max-transfer\":65536,\"opt-write-zero\":8192,\"max-write-zero\":65536,"
                                + "\"opt-discard\":65536,\"max-discard\":131072",
                        List.of(
                                "write -P 0x33 1000 200000",
                                "read -P 0x33 1000 200000",
                                "write -z 0 300000",
                                "discard 0 300000",
                                "read 0 4096")),
                new Case("\"config\":\"" + config + "\"", List.of("read 4096 512", "read 0 512")));
        strata = QsdDifferentialTest.startStrata(List.of(), strataDir);
        int compared = 0;
        int failed = 0;
        try (QmpClient q = QmpClient.connect(strataDir.resolve("qmp.sock")).negotiate()) {
            int n = 0;
            for (Case c : cases) {
                String options = "{\"driver\":\"raw\",\"file\":{\"driver\":\"blkdebug\"," + c.blkdebug()
                        + ",\"image\":{\"driver\":\"file\",\"filename\":\"" + image + "\"}}}";
                List<String> qemuArgs = new java.util.ArrayList<>(List.of("qemu-io"));
                for (String cmd : c.commands()) {
                    qemuArgs.addAll(List.of("-c", cmd));
                }
                qemuArgs.add("json:" + options);
                Interop.Result qemu = Interop.run(qemuArgs);
                String node = "n" + n++;
                @SuppressWarnings("unchecked")
                Map<String, Object> add = (Map<String, Object>) Json.parse(options);
                add.put("node-name", node);
                Map<String, Object> reply = q.execute("blockdev-add", add);
                if (qemu.stderr().contains("can't open device")) {
                    String theirs = qemu.stderr()
                            .substring(qemu.stderr().indexOf("}}}: ") + 5)
                            .strip();
                    assertThat(QmpClient.errorOf(reply)).as(c.blkdebug()).isEqualTo("GenericError: " + theirs);
                    compared++;
                    continue;
                }
                assertThat(reply).as(c.blkdebug()).containsKey("return");
                StringBuilder mine = new StringBuilder();
                for (String cmd : c.commands()) {
                    mine.append(q.ok(
                            "human-monitor-command", args("command-line", "qemu-io " + node + " \"" + cmd + "\"")));
                }
                assertThat(failures(mine.toString()))
                        .as("%s: %s", c.blkdebug(), c.commands())
                        .isEqualTo(failures(qemu.stdout()));
                failed += failures(qemu.stdout()).size();
                compared++;
                q.ok("blockdev-del", args("node-name", node));
            }
        }
        assertThat(compared).isEqualTo(cases.size());
        // the comparison covers injected failures, not only clean runs
        assertThat(failed).isGreaterThanOrEqualTo(2);
    }

    /** The failure lines of qemu-io's output ("read failed: ..."), in order: what must agree. */
    private static List<String> failures(String output) {
        return output.lines().filter(l -> l.contains("failed")).toList();
    }
}
