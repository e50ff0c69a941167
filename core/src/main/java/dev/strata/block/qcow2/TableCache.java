package dev.strata.block.qcow2;

import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A least-recently-used cache of cluster-sized metadata tables (L2 tables, refcount blocks), keyed
 * by host offset.
 *
 * <p>The cache is write-through: callers change a cached table and write the changed bytes to the
 * file at once, so the cache never holds data the file lacks and crash consistency is decided by
 * the order of those writes alone. The exception is write-back ({@link DeferredMetadata}), which
 * keeps changed tables itself; loaders ask it first, so an evicted table never reloads stale. A
 * cached array is handed out as it is: callers change it only under the driver's exclusive
 * metadata lock, and readers use it only under the shared lock.
 */
final class TableCache {
    /** Loads a table that is not cached. */
    @FunctionalInterface
    interface Loader {
        byte[] load(long offset) throws IOException;
    }

    private final int capacity;
    // guarded by this
    private final LinkedHashMap<Long, byte[]> tables;

    TableCache(int capacity) {
        this.capacity = Math.max(2, capacity);
        this.tables = new LinkedHashMap<>(16, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Long, byte[]> eldest) {
                return size() > TableCache.this.capacity;
            }
        };
    }

    byte[] get(long offset, Loader loader) throws IOException {
        synchronized (this) {
            byte[] t = tables.get(offset);
            if (t != null) {
                return t;
            }
        }
        // loading outside the monitor lets readers of other tables proceed; two readers racing
        // on one table load it twice and keep the first, which is harmless because readers
        // never change tables
        byte[] loaded = loader.load(offset);
        synchronized (this) {
            byte[] prev = tables.putIfAbsent(offset, loaded);
            return prev != null ? prev : loaded;
        }
    }

    synchronized void put(long offset, byte[] table) {
        tables.put(offset, table);
    }

    synchronized void invalidate(long offset) {
        tables.remove(offset);
    }

    synchronized void clear() {
        tables.clear();
    }
}
