package dev.strata.block;

import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The I/O gate of one node: counts requests in flight and lets a caller drain the node, that is
 * wait until no request is in flight and hold new ones back until it is done (QEMU's
 * bdrv_drained_begin/end). blockdev-del drains before closing; transactions drain the nodes they
 * touch (invariant 2).
 *
 * <p>Concurrency: entering and leaving are one atomic update each while nobody drains (the common
 * case costs no lock). {@code state} holds the in-flight count in its low bits and {@link
 * #DRAINING} while at least one drain is active; waits happen under {@code lock}. Drains nest and
 * may come from several threads; a thread that holds a drain may still issue I/O on the node (it
 * is let through), so a drained section can read and write what it drained.
 *
 * <p>Nested requests are never held back: a request that a driver makes of a child while serving
 * its own (qcow2 reading a refcount block from its file, say) is part of a request already in
 * flight, which a drain of the parent waits for. Held back at a drained child it would wait for a
 * drain that waits for it; a transaction drains every node, children included, so that happened
 * (as in QEMU, only requests from outside the graph wait at a drain). A per-thread depth tells
 * them apart: requests enter and leave on one thread, and drivers call their children on it.
 */
public final class IoGate {
    private static final long DRAINING = 1L << 62;

    private final AtomicLong state = new AtomicLong();
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    // guarded by lock
    private int drains;
    private final Map<Thread, Integer> drainers = new HashMap<>();

    /** Requests this thread is inside, on any node: above 0, the next request is a nested one. */
    private static final ThreadLocal<int[]> DEPTH = ThreadLocal.withInitial(() -> new int[1]);

    /** A held drain; closing it lets held-back requests go. */
    public interface Drained extends AutoCloseable {
        @Override
        void close();
    }

    /** Admits one request, waiting while the node is drained by another thread (unless nested). */
    public void enter() {
        int[] depth = DEPTH.get();
        if (depth[0] > 0) {
            state.incrementAndGet();
            depth[0]++;
            return;
        }
        admit();
        depth[0]++;
    }

    private void admit() {
        while (true) {
            long s = state.get();
            if ((s & DRAINING) == 0) {
                if (state.compareAndSet(s, s + 1)) {
                    return;
                }
                continue;
            }
            lock.lock();
            try {
                if (drainers.containsKey(Thread.currentThread())) {
                    state.incrementAndGet();
                    return;
                }
                while ((state.get() & DRAINING) != 0) {
                    changed.awaitUninterruptibly();
                }
            } finally {
                lock.unlock();
            }
        }
    }

    /**
     * Admits a request of a block job (a backup's copy, copy-before-write's write to the target)
     * even while the node is drained: a drain waits for it to finish but never holds it back, so a
     * guest write waiting on a copy can never wait on a drain that waits on that guest write (QEMU
     * lets a job's own requests through a drain for the same reason).
     */
    public void enterAlways() {
        state.incrementAndGet();
        DEPTH.get()[0]++;
    }

    /** Ends one request admitted by {@link #enter} or {@link #enterAlways}. */
    public void leave() {
        DEPTH.get()[0]--;
        long s = state.decrementAndGet();
        if (s == DRAINING) {
            // the last request in flight finished while someone drains: wake the drainer
            lock.lock();
            try {
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }
    }

    /** Requests in flight now (for tests and diagnostics). */
    public long inFlight() {
        return state.get() & ~DRAINING;
    }

    /** Waits until no request is in flight and holds new ones back until the result is closed. */
    public Drained drain() {
        Thread me = Thread.currentThread();
        lock.lock();
        try {
            if (drains++ == 0) {
                state.addAndGet(DRAINING);
            }
            drainers.merge(me, 1, Integer::sum);
            while ((state.get() & ~DRAINING) != 0) {
                changed.awaitUninterruptibly();
            }
        } finally {
            lock.unlock();
        }
        return new Drained() {
            private boolean released;

            @Override
            public void close() {
                lock.lock();
                try {
                    if (released) {
                        return;
                    }
                    released = true;
                    drainers.computeIfPresent(me, (t, n) -> n == 1 ? null : n - 1);
                    if (--drains == 0) {
                        state.addAndGet(-DRAINING);
                        changed.signalAll();
                    }
                } finally {
                    lock.unlock();
                }
            }
        };
    }
}
