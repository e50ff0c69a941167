package dev.strata.demo;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.Main;
import dev.strata.testing.Interop;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The README's main command, {@code strata demo}, holds every check it makes. */
class DemoTest {
    @TempDir
    Path dir;

    @Test
    void theSeedsStoryHoldsEveryCheck() throws Exception {
        Interop.require("qemu-img");
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        PrintStream saved = System.out;
        int rc;
        System.setOut(new PrintStream(bytes, true, StandardCharsets.UTF_8));
        try {
            rc = Main.run("demo", "--dir", dir.toString());
        } finally {
            System.setOut(saved);
        }
        String out = bytes.toString(StandardCharsets.UTF_8);
        assertThat(rc).as(out).isZero();
        assertThat(out).contains("Every check held.").doesNotContain("FAILED:");
        // the chain it leaves is one qemu-img reads whole and finds clean
        Interop.Result info = Interop.qemuImg(
                "info", "--backing-chain", dir.resolve("incremental.3.img").toString());
        info.assertOk();
        assertThat(info.stdout()).contains("incremental.2.img").contains("full_backup.img");
        Interop.Result check =
                Interop.qemuImg("check", dir.resolve("incremental.3.img").toString());
        assertThat(check.exitCode()).as(check.stdout()).isZero();
        assertThat(Files.exists(dir.resolve("qmp.sock")))
                .as("daemon gone, socket removed")
                .isFalse();
    }
}
