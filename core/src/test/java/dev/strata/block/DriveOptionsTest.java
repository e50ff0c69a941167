package dev.strata.block;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.drivers.Drivers;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** QEMU's {@code -drive} keys turned into a drive id and its root node's options. */
class DriveOptionsTest {
    @TempDir
    Path dir;

    private final BlockGraph graph = Drivers.newGraph();

    @Test
    void theKeysOfADriveBecomeItsRootNodesOptions() throws IOException {
        Path img = Files.write(dir.resolve("d.raw"), new byte[4096]);
        DriveOptions.Parsed p = DriveOptions.parse(
                "id=drive0,file=" + img
                        + ",node-name=node0,cache=unsafe,discard=unmap,readonly=on,if=virtio,bus=0,unit=1",
                graph);
        assertThat(p.id()).isEqualTo("drive0");
        BlockOptions root = p.root();
        assertThat(root.string("driver")).contains("raw");
        assertThat(root.string("node-name")).contains("node0");
        assertThat(root.string("read-only")).contains("on");
        assertThat(root.string("discard")).contains("unmap");
        assertThat(root.child("cache").orElseThrow().string("no-flush")).contains("on");
        assertThat(root.child("file").orElseThrow().string("filename")).contains(img.toString());
        assertThat(root.asMap().keySet()).doesNotContain("if", "bus", "unit", "id");
    }

    @Test
    void aDriveWithoutIdIsNamedAfterItsInterfaceAndTheFirstFreeIndex() throws IOException {
        Path a = Files.write(dir.resolve("a.raw"), new byte[4096]);
        Path b = Files.write(dir.resolve("b.raw"), new byte[4096]);
        assertThat(DriveOptions.parse("file=" + a + ",if=none", graph).id()).isEqualTo("none0");
        graph.addDrive(DriveOptions.parse("file=" + a + ",if=none,format=raw", graph));
        assertThat(DriveOptions.parse("file=" + b + ",if=none", graph).id()).isEqualTo("none1");
        assertThat(DriveOptions.parse(b.toString(), graph).id()).isEqualTo("ide0-hd0");
    }

    @Test
    void badValuesAreRefusedInQemusWords() throws IOException {
        Path img = Files.write(dir.resolve("d.raw"), new byte[4096]);
        for (var c : Map.of(
                        "id=1x,file=" + img,
                        "Parameter 'id' expects an identifier",
                        "id=d,file=" + img + ",cache=weird",
                        "invalid cache option",
                        "id=d,file=" + img + ",aio=xx",
                        "invalid aio option",
                        "id=d,file=" + img + ",readonly=maybe",
                        "Parameter 'read-only' expects 'on' or 'off'",
                        "id=d,if=none",
                        "A drive needs file=PATH",
                        "id=d,file=a\u0000b",
                        "Could not open 'a\u0000b': Invalid argument",
                        "id=d,file=" + dir.resolve("nope"),
                        "No such file or directory")
                .entrySet()) {
            assertThatThrownBy(() -> DriveOptions.parse(c.getKey(), graph))
                    .as(c.getKey())
                    .isInstanceOf(BlockException.class)
                    .hasMessageContaining(c.getValue());
        }
    }
}
