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

    /** Asserts {@code qemu-img check} finds no corruption and no check error; leaks are allowed. */
    static void assertNoCorruption(Path image, String context) throws Exception {
        Interop.Result check = Interop.qemuImg("check", "--output=json", image.toString());
        com.fasterxml.jackson.databind.JsonNode report =
                new com.fasterxml.jackson.databind.ObjectMapper().readTree(check.stdout());
        assertThat(report.path("corruptions").asInt(0))
                .as("%s: %s", context, check.stdout())
                .isZero();
        assertThat(report.path("check-errors").asInt(0))
                .as("%s: %s", context, check.stdout())
                .isZero();
        assertThat(check.exitCode())
                .as("%s: %s%s", context, check.stdout(), check.stderr())
                .isIn(0, 3);
    }

    /** Reads a whole qcow2 image through a read-only Strata node. */
    static byte[] readThroughStrata(Path image) throws IOException {
        try (var graph = dev.strata.block.drivers.Drivers.newGraph()) {
            BlockNode node = graph.openImage(image.toString(), "qcow2", dev.strata.block.OpenFlags.READ_ONLY);
            byte[] all = readAll(node);
            node.close();
            return all;
        }
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
