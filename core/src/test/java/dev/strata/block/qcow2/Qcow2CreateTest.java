package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Images from {@link Qcow2Create} are byte-for-byte what qemu-img creates, and QEMU finds them clean. */
class Qcow2CreateTest {
    @TempDir
    Path dir;

    @ParameterizedTest(name = "size {0}, cluster {1}, lazy {2}")
    @CsvSource({
        "16777216, 65536, false",
        "107374182400, 65536, false",
        "0, 65536, false",
        "1000, 65536, false",
        "1073741824, 512, false",
        "16777216, 2097152, false",
        "16777216, 4096, true",
        "5368709120, 4096, false"
    })
    void sameBytesAsQemuImg(long size, int clusterSize, boolean lazy) throws Exception {
        Interop.require("qemu-img");
        Path ours = dir.resolve("ours.qcow2");
        Path theirs = dir.resolve("theirs.qcow2");
        TestImages.createQcow2(
                ours, Qcow2Create.Options.of(size).withClusterSize(clusterSize).withLazyRefcounts(lazy));
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-o",
                        "cluster_size=" + clusterSize + ",lazy_refcounts=" + (lazy ? "on" : "off"),
                        theirs.toString(),
                        Long.toString(size))
                .assertOk();
        assertSameBytes(ours, theirs);
        Images.assertCheckClean(ours, "created");
        assertThat(info(ours)).isEqualTo(info(theirs));
    }

    @Test
    void backingFileSizeAndFormatAsQemuImg() throws Exception {
        Interop.require("qemu-img");
        Path base = dir.resolve("base.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", base.toString(), "3M").assertOk();
        Path ours = dir.resolve("ours.qcow2");
        Path theirs = dir.resolve("theirs.qcow2");
        TestImages.createQcow2(ours, Qcow2Create.Options.of(-1).withBacking("base.qcow2", "qcow2"));
        Interop.qemuImg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", theirs.toString())
                .assertOk();
        assertSameBytes(ours, theirs);
        Images.assertCheckClean(ours, "created with backing");
        assertThat(info(ours)).isEqualTo(info(theirs));

        assertThatThrownBy(() -> TestImages.createQcow2(
                        dir.resolve("x.qcow2"), Qcow2Create.Options.of(-1).withBacking("base.qcow2", null)))
                .hasMessage("Backing file specified without backing format\nDetected format of qcow2.");
        assertThatThrownBy(() -> TestImages.createQcow2(
                        dir.resolve("x.qcow2"), Qcow2Create.Options.of(-1).withBacking("missing.qcow2", "qcow2")))
                .hasMessageContaining("No such file or directory")
                .hasMessageEndingWith("Could not open backing image.");
    }

    @Test
    void preallocatedMetadataIsCleanAndMapsLikeQemu() throws Exception {
        Interop.require("qemu-img");
        Path ours = dir.resolve("ours.qcow2");
        Path theirs = dir.resolve("theirs.qcow2");
        TestImages.createQcow2(
                ours,
                Qcow2Create.Options.of(4 << 20)
                        .withClusterSize(4096)
                        .withPreallocation(Qcow2Create.Preallocation.METADATA));
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-o",
                        "cluster_size=4096,preallocation=metadata",
                        theirs.toString(),
                        "4M")
                .assertOk();
        Images.assertCheckClean(ours, "preallocated");
        assertThat(mapKinds(ours)).isEqualTo(mapKinds(theirs));
        assertThat(Files.size(ours)).isEqualTo(Files.size(theirs));
    }

    private static void assertSameBytes(Path ours, Path theirs) throws Exception {
        byte[] a = Files.readAllBytes(ours);
        byte[] b = Files.readAllBytes(theirs);
        int mismatch = java.util.Arrays.mismatch(a, b);
        assertThat(mismatch)
                .as("first differing byte (our size %d, qemu-img's %d)", a.length, b.length)
                .isEqualTo(-1);
    }

    /** {@code qemu-img map} without host offsets: what each range is, not where it lies. */
    private static List<String> mapKinds(Path image) throws Exception {
        List<String> out = new ArrayList<>();
        for (String line : Interop.qemuImg("map", "--output=json", image.toString())
                .assertOk()
                .stdout()
                .split("\n")) {
            out.add(line.replaceAll(", \"offset\": \\d+", ""));
        }
        return out;
    }

    private static String info(Path image) throws Exception {
        return Interop.qemuImg("info", "--output=json", image.toString())
                .assertOk()
                .stdout()
                .replaceAll("\"filename\": \"[^\"]*\"", "")
                .replaceAll("\"actual-size\": \\d+", "")
                .replaceAll("\"backing-filename\": \"[^\"]*\"", "")
                .replaceAll("\"full-backing-filename\": \"[^\"]*\"", "");
    }
}
