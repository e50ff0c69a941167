package dev.strata.block.qcow2;

import static dev.strata.block.qcow2.Qcow2CheckFixture.assertSameReport;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Healthy images made by QEMU's tools: Strata's check must print exactly what {@code qemu-img
 * check} prints (JSON with its key order, human report, exit code), and a repair must find
 * nothing to do.
 */
class Qcow2CheckCleanTest {
    @TempDir
    Path dir;

    /** A way to make an image with qemu-img/qemu-io, run in the test's directory. */
    @FunctionalInterface
    interface Recipe {
        void make(Path dir, Path image) throws Exception;
    }

    static Stream<Arguments> images() {
        return Stream.of(
                Arguments.of("empty", (Recipe) (d, p) -> create(p, "64M")),
                Arguments.of("64k clusters with data", (Recipe) (d, p) -> {
                    create(p, "64M");
                    io(p, "write -P 1 0 1M", "write -P 2 10M 64k", "write 33M 3M");
                }),
                Arguments.of("512 byte clusters", (Recipe) (d, p) -> {
                    create(p, "64M", "-o", "cluster_size=512");
                    io(p, "write -P 1 0 1M", "write -P 2 10M 64k", "write 33M 300k");
                }),
                Arguments.of("4k clusters", (Recipe) (d, p) -> {
                    create(p, "64M", "-o", "cluster_size=4096");
                    io(p, "write -P 1 0 1M", "write -P 2 40M 64k");
                }),
                Arguments.of("2M clusters", (Recipe) (d, p) -> {
                    create(p, "64M", "-o", "cluster_size=2M");
                    io(p, "write -P 1 0 1M", "write -P 2 40M 3M");
                }),
                Arguments.of("refcount_bits=1", (Recipe) (d, p) -> {
                    create(p, "64M", "-o", "refcount_bits=1");
                    io(p, "write -P 1 0 1M");
                }),
                Arguments.of("refcount_bits=8", (Recipe) (d, p) -> {
                    create(p, "64M", "-o", "refcount_bits=8");
                    io(p, "write -P 1 0 1M");
                }),
                Arguments.of("refcount_bits=64", (Recipe) (d, p) -> {
                    create(p, "64M", "-o", "refcount_bits=64");
                    io(p, "write -P 1 0 1M");
                }),
                Arguments.of("v2 (compat=0.10)", (Recipe) (d, p) -> {
                    create(p, "64M", "-o", "compat=0.10");
                    io(p, "write -P 1 0 1M", "write -z 4M 64k");
                }),
                Arguments.of("extended L2 entries", (Recipe) (d, p) -> {
                    create(p, "64M", "-o", "extended_l2=on");
                    io(p, "write -P 1 0 1M", "write -P 1 5M 4k", "write -z 8M 8k");
                }),
                Arguments.of("zero clusters and discards", (Recipe) (d, p) -> {
                    create(p, "64M");
                    io(p, "write -P 1 0 2M", "write -z 256k 128k", "discard 1M 64k", "write -z -u 1536k 64k");
                }),
                Arguments.of("with backing file", (Recipe) (d, p) -> {
                    Path base = d.resolve("base.qcow2");
                    create(base, "64M");
                    io(base, "write -P 1 0 4M");
                    Interop.qemuImg("create", "-f", "qcow2", "-b", base.toString(), "-F", "qcow2", p.toString())
                            .assertOk();
                    io(p, "write -P 2 1M 128k");
                }),
                Arguments.of("compressed clusters (convert -c)", (Recipe) (d, p) -> {
                    Path raw = d.resolve("src.raw");
                    Interop.qemuImg("create", "-f", "raw", raw.toString(), "64M")
                            .assertOk();
                    Interop.qemuIo("-f", "raw", "-c", "write -P 3 0 3M", "-c", "write -P 4 20M 1M", raw.toString())
                            .assertOk();
                    Interop.qemuImg("convert", "-c", "-O", "qcow2", raw.toString(), p.toString())
                            .assertOk();
                }),
                Arguments.of("compressed clusters, 4k clusters, mixed", (Recipe) (d, p) -> {
                    Path raw = d.resolve("src.raw");
                    Interop.qemuImg("create", "-f", "raw", raw.toString(), "8M").assertOk();
                    Interop.qemuIo("-f", "raw", "-c", "write -P 5 0 1M", raw.toString())
                            .assertOk();
                    Interop.qemuImg(
                                    "convert",
                                    "-c",
                                    "-O",
                                    "qcow2",
                                    "-o",
                                    "cluster_size=4096",
                                    raw.toString(),
                                    p.toString())
                            .assertOk();
                    io(p, "write -P 6 512k 8k");
                }),
                Arguments.of("persistent bitmaps (bitmap --add)", (Recipe) (d, p) -> {
                    create(p, "64M");
                    io(p, "write -P 1 0 1M");
                    Interop.qemuImg("bitmap", "--add", p.toString(), "b0").assertOk();
                    io(p, "write -P 7 20M 1M");
                    Interop.qemuImg("bitmap", "--add", "-g", "512k", p.toString(), "b1")
                            .assertOk();
                }),
                Arguments.of("internal snapshots", (Recipe) (d, p) -> {
                    create(p, "64M");
                    io(p, "write -P 1 0 1M");
                    Interop.qemuImg("snapshot", "-c", "s1", p.toString()).assertOk();
                    io(p, "write -P 9 0 128k");
                    Interop.qemuImg("snapshot", "-c", "s2", p.toString()).assertOk();
                    io(p, "write -P 8 5M 64k");
                }));
    }

    static void create(Path p, String size, String... opts) throws Exception {
        List<String> cmd = new java.util.ArrayList<>(List.of("create", "-f", "qcow2"));
        cmd.addAll(List.of(opts));
        cmd.add(p.toString());
        cmd.add(size);
        Interop.qemuImg(cmd.toArray(String[]::new)).assertOk();
    }

    static void io(Path p, String... commands) throws Exception {
        List<String> cmd = new java.util.ArrayList<>();
        for (String c : commands) {
            cmd.add("-c");
            cmd.add(c);
        }
        cmd.add(p.toString());
        Interop.qemuIo(cmd.toArray(String[]::new)).assertOk();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("images")
    void reportsWhatQemuImgReports(String name, Recipe recipe) throws Exception {
        Interop.require("qemu-img");
        Path image = dir.resolve("img.qcow2");
        recipe.make(dir, image);
        Qcow2CheckFixture.Report qemu =
                Qcow2CheckFixture.qemu(image, Qcow2Check.RepairMode.NONE, dir.resolve("q.qcow2"));
        Qcow2CheckFixture.Report strata =
                Qcow2CheckFixture.strata(image, Qcow2Check.RepairMode.NONE, dir.resolve("s.qcow2"));
        assertThat(qemu.exitCode()).as("qemu-img finds the image clean").isZero();
        assertSameReport(strata, qemu, true);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("images")
    void repairOfCleanImageChangesNothing(String name, Recipe recipe) throws Exception {
        Interop.require("qemu-img");
        Path image = dir.resolve("img.qcow2");
        recipe.make(dir, image);
        Path copy = dir.resolve("s.qcow2");
        Qcow2CheckFixture.Report strata = Qcow2CheckFixture.strata(image, Qcow2Check.RepairMode.ALL, copy);
        assertThat(strata.exitCode()).isZero();
        assertThat(strata.json()).doesNotContainKeys("corruptions-fixed", "leaks-fixed");
        assertThat(Files.readAllBytes(copy)).as("image bytes").isEqualTo(Files.readAllBytes(image));
    }
}
