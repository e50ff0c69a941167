package dev.strata.img;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Images whose header QEMU refuses to open for I/O: Strata refuses them the same way, with the
 * same text, and describes them where QEMU does (qemu-img info opens without I/O).
 */
class OpenTimeChecksTest {
    /** The autoclear feature bits' offset in a version 3 header, and data-file-raw's bit. */
    private static final int AUTOCLEAR_OFFSET = 88;

    private static final long DATA_FILE_RAW = 1L << 1;

    @TempDir
    Path dir;

    @Test
    void dataFileRawWithoutADataFileIsRefusedForIoAndDescribedByInfo() throws Exception {
        Interop.require("qemu-img");
        Path image = dir.resolve("raw-bit.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", image.toString(), "1M").assertOk();
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.seek(AUTOCLEAR_OFFSET);
            long bits = f.readLong();
            f.seek(AUTOCLEAR_OFFSET);
            f.writeLong(bits | DATA_FILE_RAW);
        }
        String name = image.toString();
        int refused = 0;
        for (List<String> command : List.of(
                List.of("info", name),
                List.of("map", name),
                List.of("check", name),
                List.of("compare", name, name),
                List.of("convert", "-O", "raw", name, dir.resolve("out.raw").toString()),
                List.of("resize", name, "2M"))) {
            String[] args = command.toArray(String[]::new);
            ImgTool.Run qemu = ImgTool.qemu(args);
            ImgTool.Run strata = ImgTool.strata(args);
            String what = String.join(" ", command);
            assertThat(strata.exit()).as(what).isEqualTo(qemu.exit());
            assertThat(strata.errNormalized()).as(what).isEqualTo(qemu.errNormalized());
            if (qemu.err().contains("data-file-raw requires a data file")) {
                refused++;
            }
        }
        assertThat(refused).as("every command but info refused").isEqualTo(5);
    }
}
