package dev.strata.block;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * An optional capability of a format driver: writing one whole guest cluster compressed (QEMU's
 * BDRV_REQ_WRITE_COMPRESSED), which callers find with {@code driver() instanceof CompressedWriter}.
 *
 * <p>Only whole clusters at cluster-aligned offsets are accepted; the last cluster of the image may
 * be given short and reads as zeros past the data given. Data that does not shrink is stored as an
 * ordinary cluster instead.
 */
public interface CompressedWriter {

    /**
     * Writes {@code src} (its remaining bytes, consumed) as the guest cluster at {@code offset};
     * returns whether it was stored compressed.
     */
    boolean writeCompressed(long offset, ByteBuffer src) throws IOException;
}
