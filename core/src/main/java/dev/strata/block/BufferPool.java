package dev.strata.block;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * Direct buffers for I/O in flight, reused from request to request (an NBD server's connections
 * share one pool, backup jobs another), so that an I/O touches no fresh pages: on the machines
 * Strata runs on, the first touch of a page costs far more than the copy it holds, and a fresh
 * direct buffer is zeroed, which touches every page of it.
 *
 * <p>{@link #take} hands out the smallest idle buffer that fits, or a new one of the next power
 * of two; {@link #give} keeps a buffer while the idle ones stay within {@code maxIdle} buffers and
 * {@code maxIdleBytes} bytes, so the pool settles on what its clients use and stays bounded.
 */
public final class BufferPool {
    private static final int MIN = 64 << 10;

    private final int maxIdle;
    private final long maxIdleBytes;
    // guarded by this
    private final List<ByteBuffer> idle = new ArrayList<>();
    private long idleBytes;

    public BufferPool(int maxIdle, long maxIdleBytes) {
        this.maxIdle = maxIdle;
        this.maxIdleBytes = maxIdleBytes;
    }

    /** A cleared buffer with exactly {@code size} bytes of room. */
    public ByteBuffer take(int size) {
        ByteBuffer b = null;
        synchronized (this) {
            int best = -1;
            for (int i = 0; i < idle.size(); i++) {
                int c = idle.get(i).capacity();
                if (c >= size && (best < 0 || c < idle.get(best).capacity())) {
                    best = i;
                }
            }
            if (best >= 0) {
                b = idle.remove(best);
                idleBytes -= b.capacity();
            }
        }
        if (b == null) {
            b = ByteBuffer.allocateDirect(Math.max(MIN, Integer.highestOneBit(Math.max(size - 1, 1)) << 1));
        }
        return b.clear().limit(size);
    }

    public void give(ByteBuffer b) {
        synchronized (this) {
            if (idle.size() < maxIdle && idleBytes + b.capacity() <= maxIdleBytes) {
                idle.add(b);
                idleBytes += b.capacity();
            }
        }
    }
}
