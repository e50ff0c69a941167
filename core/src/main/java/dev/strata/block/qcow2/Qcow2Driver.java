package dev.strata.block.qcow2;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockOptions;
import dev.strata.block.OpenContext;
import java.io.IOException;
import java.nio.ByteBuffer;

/** The qcow2 format driver (placeholder until the engine lands). */
public final class Qcow2Driver {
    private Qcow2Driver() {}

    public static BlockDriver open(BlockOptions options, OpenContext context) throws IOException {
        throw new BlockException("qcow2 is not implemented yet", BlockException.ENOTSUP);
    }

    /** Format probe: qcow2 images start with "QFI\xfb". */
    public static int probe(ByteBuffer head, String filename) {
        return head.remaining() >= 4 && head.getInt(0) == 0x514649fb ? 100 : 0;
    }
}
