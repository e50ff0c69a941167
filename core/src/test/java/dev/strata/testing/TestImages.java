package dev.strata.testing;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.drivers.Drivers;
import dev.strata.block.qcow2.Qcow2Check;
import dev.strata.block.qcow2.Qcow2CheckResult;
import dev.strata.block.qcow2.Qcow2Create;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

/**
 * Image creation and checks for tests, by path: each opens what it needs through a graph of its
 * own, with image locks, as the product's commands do.
 */
public final class TestImages {
    private TestImages() {}

    /** Creates the qcow2 image {@code path} through a graph of its own. */
    public static void createQcow2(Path path, Qcow2Create.Options options) throws IOException {
        try (BlockGraph graph = Drivers.newGraph()) {
            Qcow2Create.create(graph, path.toString(), options);
        }
    }

    /** Checks {@code image}, reporting it under its path as given. */
    public static Qcow2CheckResult check(Path image, Qcow2Check.RepairMode mode) {
        return check(image, image.toString(), mode, Qcow2Check.defaultMemoryBudget());
    }

    /**
     * Checks {@code image} as {@code strata img check} does: through its file node, read-only to
     * check, read-write to repair.
     */
    public static Qcow2CheckResult check(Path image, String filename, Qcow2Check.RepairMode mode, long budget) {
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode file = openFile(graph, image, mode != Qcow2Check.RepairMode.NONE)) {
            return Qcow2Check.run(file.driver(), filename, mode, budget);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The image's file node alone ("file" driver), read-write or read-only, with its image lock. */
    public static BlockNode openFile(BlockGraph graph, Path image, boolean writable) throws IOException {
        return graph.add(BlockOptions.empty()
                .put("driver", "file")
                .put("filename", image.toString())
                .put("read-only", !writable));
    }
}
