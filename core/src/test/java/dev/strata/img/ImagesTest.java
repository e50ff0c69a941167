package dev.strata.img;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.block.qcow2.Qcow2Create;
import dev.strata.testing.TestImages;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** How the img commands open images: qemu-img's {@code -t unsafe} reaches the host file. */
class ImagesTest {
    @TempDir
    Path dir;

    @Test
    void unsafeCacheMakesEveryLayerSkipFlushes() throws Exception {
        Path image = dir.resolve("a.qcow2");
        TestImages.createQcow2(image, Qcow2Create.Options.of(1 << 20));
        PrintWriter err = new PrintWriter(new StringWriter());
        for (boolean unsafe : new boolean[] {true, false}) {
            try (BlockGraph graph = Drivers.newGraph();
                    BlockNode node = Images.open(
                            graph, image.toString(), "qcow2", OpenFlags.READ_WRITE.withNoFlush(unsafe), true, err)) {
                assertThat(node.noFlush()).as("qcow2 node, unsafe=%s", unsafe).isEqualTo(unsafe);
                assertThat(node.file().orElseThrow().noFlush())
                        .as("file node, unsafe=%s", unsafe)
                        .isEqualTo(unsafe);
            }
        }
    }
}
