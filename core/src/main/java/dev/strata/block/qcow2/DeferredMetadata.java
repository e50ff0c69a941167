package dev.strata.block.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Write-back of the metadata that every allocating write changes (L2 entries and refcount
 * entries), for an image whose contents only count once it is flushed: a backup's target, which
 * the job flushes before it reports success. Off by default: then every change is written through
 * at once, in {@link Refcounts}' and {@link ClusterMap}'s order.
 *
 * <p>While on, a changed table is kept here (the same array the caches hold, so a reader sees the
 * change at once) with the span of bytes that differ from the file, and {@link #writeBack} writes
 * them: every refcount block first, then every L2 table, then the L1 entries that point to new
 * L2 tables. That keeps the crash order of the write-through path: a refcount raised reaches the
 * file before any entry that points to its cluster, and a new table before the L1 entry that
 * makes it reachable. What would break the order is written back first: a refcount lowered (its
 * caller removed the pointer in a deferred entry, which must reach the file before the drop; see
 * {@link Refcounts#free}), and every other write that makes a new structure reachable (a
 * refcount table entry or table, the header, a new L1 table). After a crash an image holds leaks
 * at worst.
 *
 * <p>At most {@link #MAX_TABLES} tables wait at once; one more writes them all back, so the memory
 * held stays bounded whatever the image's size.
 *
 * <p>Concurrency: changed only under the driver's exclusive metadata lock; {@link #pending} is
 * read under the shared side (a cache loader), when nothing changes it.
 */
final class DeferredMetadata {
    static final int MAX_TABLES = 64;

    /** A table waiting for the file, and the bytes {@code [from, to)} the file lacks. */
    private static final class Dirty {
        final byte[] table;
        int from;
        int to;

        Dirty(byte[] table, int from, int to) {
            this.table = table;
            this.from = from;
            this.to = to;
        }
    }

    private final ImageFile file;
    // insertion order, never access order: reads under the shared lock must not change the maps
    private final Map<Long, Dirty> refcountBlocks = new LinkedHashMap<>();
    private final Map<Long, Dirty> l2Tables = new LinkedHashMap<>();
    /** L1 entries waiting, by their offset in the file. */
    private final Map<Long, Long> l1Entries = new LinkedHashMap<>();

    private boolean on;

    DeferredMetadata(ImageFile file) {
        this.file = file;
    }

    boolean on() {
        return on;
    }

    /** Turns write-back on, or writes everything back and turns it off. */
    void set(boolean enable) throws IOException {
        if (!enable) {
            writeBack();
        }
        on = enable;
    }

    /**
     * Takes a change of bytes {@code [from, to)} of the refcount block at {@code offset}; false
     * (nothing taken) when write-back is off, and the caller writes through.
     */
    boolean refcountBlock(long offset, byte[] table, int from, int to) throws IOException {
        return take(refcountBlocks, offset, table, from, to);
    }

    /** As {@link #refcountBlock}, for the L2 table at {@code offset}. */
    boolean l2Table(long offset, byte[] table, int from, int to) throws IOException {
        return take(l2Tables, offset, table, from, to);
    }

    private boolean take(Map<Long, Dirty> tables, long offset, byte[] table, int from, int to) throws IOException {
        if (!on) {
            return false;
        }
        Dirty d = tables.get(offset);
        if (d == null) {
            if (refcountBlocks.size() + l2Tables.size() >= MAX_TABLES) {
                writeBack();
            }
            tables.put(offset, new Dirty(table, from, to));
        } else {
            d.from = Math.min(d.from, from);
            d.to = Math.max(d.to, to);
        }
        return true;
    }

    /**
     * Takes the L1 entry {@code value} at file offset {@code offset}, to be written after every
     * table waiting; false (nothing taken) when write-back is off.
     */
    boolean l1Entry(long offset, long value) {
        if (!on) {
            return false;
        }
        l1Entries.put(offset, value);
        return true;
    }

    /** The waiting copy of the table at {@code offset}, for a cache that reloads it; null for none. */
    byte[] pending(long offset) {
        Dirty d = refcountBlocks.get(offset);
        if (d == null) {
            d = l2Tables.get(offset);
        }
        return d == null ? null : d.table;
    }

    /**
     * Writes every waiting change: refcount blocks, then L2 tables, then L1 entries. A change whose
     * write fails stays waiting (with the rest), so a later write-back tries again.
     */
    void writeBack() throws IOException {
        writeAll(refcountBlocks);
        writeAll(l2Tables);
        var it = l1Entries.entrySet().iterator();
        while (it.hasNext()) {
            var e = it.next();
            file.write(e.getKey(), ByteBuffer.allocate(8).putLong(0, e.getValue()));
            it.remove();
        }
    }

    private void writeAll(Map<Long, Dirty> tables) throws IOException {
        var it = tables.entrySet().iterator();
        while (it.hasNext()) {
            var e = it.next();
            Dirty d = e.getValue();
            file.write(e.getKey() + d.from, d.table, d.from, d.to - d.from);
            it.remove();
        }
    }
}
