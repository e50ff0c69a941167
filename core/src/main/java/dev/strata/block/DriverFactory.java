package dev.strata.block;

import java.io.IOException;

/** Opens one kind of driver from its options; children are opened through the {@link OpenContext}. */
@FunctionalInterface
public interface DriverFactory {
    BlockDriver open(BlockOptions options, OpenContext context) throws IOException;
}
