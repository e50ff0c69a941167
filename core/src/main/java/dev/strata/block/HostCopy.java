package dev.strata.block;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The fallback of copy offload: the bytes of a {@link HostRun} moved through a pooled buffer, for
 * drivers and file pairs the kernel cannot copy between.
 */
public final class HostCopy {
    private HostCopy() {}

    /**
     * Whether callers try copy offload at all ({@code -Dstrata.copy.offload=false} turns it off,
     * for benchmarks that compare the two).
     */
    public static final boolean ENABLED = !"false".equals(System.getProperty("strata.copy.offload"));

    private static final int CHUNK = 1 << 20;
    private static final BufferPool BUFFERS = new BufferPool(8, 8L << 20);

    /** Where a piece of the run goes: {@code pos} is its offset from the run's start. */
    @FunctionalInterface
    public interface Sink {
        void write(long pos, ByteBuffer piece) throws IOException;
    }

    /** Reads the run piece by piece and hands each piece to {@code sink}. */
    public static void throughMemory(HostRun run, Sink sink) throws IOException {
        ByteBuffer buf = BUFFERS.take((int) Math.min(CHUNK, run.length()));
        try {
            for (long pos = 0; pos < run.length(); ) {
                int n = (int) Math.min(buf.capacity(), run.length() - pos);
                buf.clear().limit(n);
                run.file().read(run.offset() + pos, buf);
                sink.write(pos, buf.flip());
                pos += n;
            }
        } finally {
            BUFFERS.give(buf);
        }
    }
}
