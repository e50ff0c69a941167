package dev.strata.block;

import java.io.IOException;

/**
 * Something that must happen before a node's data changes: a backup's copy-before-write, which
 * saves the old contents of a range to its target before a guest write, zero-write or discard
 * overwrites them. Runs inside the request's I/O gate entry, before the driver call; a failure
 * fails the request and the data stays as it was.
 */
@FunctionalInterface
public interface BeforeWrite {
    void beforeWrite(BlockNode node, long offset, long length) throws IOException;
}
