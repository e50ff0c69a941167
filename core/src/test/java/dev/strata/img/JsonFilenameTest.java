package dev.strata.img;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code json:{...}} filenames on the command line, beside qemu-img: the same output for the forms
 * QEMU accepts (driver given or probed through {@code file}, nested or dotted keys, {@code -f}
 * overriding the driver) and the same error for the ones it refuses.
 */
class JsonFilenameTest {
    @TempDir
    Path dir;

    @Test
    void infoMapAndCheckReadJsonFilenamesAsQemuImgDoes() throws Exception {
        Interop.require("qemu-img", "qemu-io");
        Path image = dir.resolve("j.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", image.toString(), "4M").assertOk();
        Interop.qemuIo("-c", "write -P 0x33 1M 64k", image.toString()).assertOk();
        String file = "{\"driver\":\"file\",\"filename\":\"" + image + "\"}";
        List<String> names = List.of(
                "json:{\"driver\":\"qcow2\",\"file\":" + file + "}",
                "json:{\"file\":" + file + "}",
                "json:{\"driver\":\"qcow2\",\"file.driver\":\"file\",\"file.filename\":\"" + image + "\"}",
                "json:{\"filename\":\"" + image + "\"}",
                "json:[1]",
                "json:{bad",
                "json:{\"a\":",
                "json:");
        int accepted = 0;
        for (String name : names) {
            for (List<String> command : List.of(
                    List.of("info", name),
                    List.of("info", "--output=json", name),
                    List.of("map", "--output=json", name),
                    List.of("check", name),
                    List.of("info", "-f", "raw", name))) {
                String[] args = command.toArray(String[]::new);
                ImgTool.Run qemu = ImgTool.qemu(args);
                ImgTool.Run strata = ImgTool.strata(args);
                String what = String.join(" ", command);
                assertThat(strata.exit()).as(what).isEqualTo(qemu.exit());
                assertThat(strata.out()).as(what).isEqualTo(qemu.out());
                assertThat(strata.errNormalized()).as(what).isEqualTo(qemu.errNormalized());
                if (qemu.exit() == 0) {
                    accepted++;
                }
            }
        }
        // the comparison covers both outcomes: the first three names open, the rest are refused
        assertThat(accepted).isEqualTo(15);
    }
}
