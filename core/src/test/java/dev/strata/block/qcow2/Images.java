package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockNode;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;

/** Test helpers: whole-image reads, raw copies of models, and QEMU's verdicts on an image. */
final class Images {
    private Images() {}

    static byte[] readAll(BlockNode node) throws IOException {
        long len = node.length();
        byte[] out = new byte[(int) len];
        node.read(0, ByteBuffer.wrap(out));
        return out;
    }

    /** Asserts {@code qemu-img check} finds neither errors nor leaks. */
    static void assertCheckClean(Path image, String context) throws Exception {
        Interop.Result r = Interop.qemuImg("check", image.toString());
        assertThat(r.exitCode())
                .as("%s: qemu-img check %s\n%s%s", context, image, r.stdout(), r.stderr())
                .isZero();
        assertThat(r.stdout())
                .as("%s: qemu-img check %s", context, image)
                .contains("No errors were found on the image.")
                .doesNotContain("leaked");
    }

    /** Asserts {@code qemu-img compare} finds the qcow2 image identical to {@code model}. */
    static void assertSameAs(Path image, byte[] model, Path scratch, String context) throws Exception {
        Path raw = scratch.resolve("model-" + System.nanoTime() + ".raw");
        Files.write(raw, model);
        try {
            Interop.Result r = Interop.qemuImg("compare", "-f", "qcow2", "-F", "raw", image.toString(), raw.toString());
            assertThat(r.exitCode())
                    .as("%s: qemu-img compare %s\n%s%s", context, image, r.stdout(), r.stderr())
                    .isZero();
        } finally {
            Files.deleteIfExists(raw);
        }
    }

    /** The image as {@code qemu-img convert -O raw} sees it. */
    static byte[] qemuRaw(Path image, Path scratch) throws Exception {
        Path raw = scratch.resolve("conv-" + System.nanoTime() + ".raw");
        Interop.qemuImg("convert", "-O", "raw", image.toString(), raw.toString())
                .assertOk();
        try {
            return Files.readAllBytes(raw);
        } finally {
            Files.deleteIfExists(raw);
        }
    }
}
