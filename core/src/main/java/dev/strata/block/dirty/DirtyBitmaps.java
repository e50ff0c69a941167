package dev.strata.block.dirty;

import dev.strata.bitmap.HBitmap;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The dirty bitmaps of one node, with QEMU's rules for adding, removing, merging and the backup
 * successor protocol, each refusal worded as QEMU words it.
 *
 * <p>Concurrency: the write path calls {@link #markDirty} with no lock; it iterates an immutable
 * snapshot of the list (replaced, never mutated, under {@code lock}). Every other operation holds
 * {@code lock}, so the checks and the change they guard are one step.
 *
 * <p>Invariants: names are unique among named bitmaps; the list is newest first (QEMU inserts at
 * the head, and query output depends on it); a successor is in the list as an anonymous bitmap for
 * exactly as long as its parent points to it.
 */
public final class DirtyBitmaps {
    /** Longest name QEMU accepts (qcow2 stores at most 1023 bytes). */
    public static final int MAX_NAME_BYTES = 1023;

    private final ReentrantLock lock = new ReentrantLock();
    /** What removing a persistent bitmap does to the image's copy of it (the node's driver). */
    private final StoredCopy stored;
    // replaced under lock; read without it by the write path
    private volatile List<DirtyBitmap> list = List.of();
    // the same bitmaps as an array, replaced together with the list, for the write path's loop
    private volatile DirtyBitmap[] marking = new DirtyBitmap[0];

    /** The bitmaps of a node whose image stores none. */
    public DirtyBitmaps() {
        this(b -> {});
    }

    /** The bitmaps of a node whose image deletes a persistent bitmap's copy through {@code stored}. */
    public DirtyBitmaps(StoredCopy stored) {
        this.stored = stored;
    }

    /** Marks the range in every recording bitmap, successors included. Lock-free. */
    public void markDirty(long offset, long length) {
        for (DirtyBitmap b : marking) {
            b.markDirty(offset, length);
        }
    }

    /** Newest first, anonymous ones included. */
    public List<DirtyBitmap> all() {
        return list;
    }

    public Optional<DirtyBitmap> find(String name) {
        for (DirtyBitmap b : list) {
            if (name.equals(b.name())) {
                return Optional.of(b);
            }
        }
        return Optional.empty();
    }

    /** Finds a named bitmap or fails with QEMU's "Dirty bitmap '%s' not found". */
    public DirtyBitmap lookup(String name) throws BitmapException {
        return find(name).orElseThrow(() -> new BitmapException("Dirty bitmap '" + name + "' not found"));
    }

    /**
     * Adds a named bitmap after QEMU's checks, in QEMU's order (name, granularity, duplicate,
     * length of name); the node lookup and persistence checks belong to the caller.
     */
    public DirtyBitmap add(String name, long nodeLength, long granularity, boolean disabled) throws BitmapException {
        return add(name, nodeLength, granularity, disabled, false);
    }

    /** {@link #add}, the bitmap persistent when asked (the image's checks were the caller's). */
    public DirtyBitmap add(String name, long nodeLength, long granularity, boolean disabled, boolean persistent)
            throws BitmapException {
        if (name.isEmpty()) {
            throw new BitmapException("Bitmap name cannot be empty");
        }
        checkGranularity(granularity);
        lock.lock();
        try {
            if (find(name).isPresent()) {
                throw new BitmapException("Bitmap already exists: " + name);
            }
            if (name.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > MAX_NAME_BYTES) {
                throw new BitmapException("Bitmap name too long: " + name);
            }
            DirtyBitmap b = new DirtyBitmap(name, nodeLength, granularity, !disabled);
            b.setPersistent(persistent);
            insert(b);
            return b;
        } finally {
            lock.unlock();
        }
    }

    /** An anonymous, enabled bitmap for internal use (copy-before-write, block-copy). */
    public DirtyBitmap addAnonymous(long nodeLength, long granularity) throws BitmapException {
        checkGranularity(granularity);
        lock.lock();
        try {
            DirtyBitmap b = new DirtyBitmap(null, nodeLength, granularity, true);
            insert(b);
            return b;
        } finally {
            lock.unlock();
        }
    }

    public static void checkGranularity(long granularity) throws BitmapException {
        if (granularity < 512 || Long.bitCount(granularity) != 1 || granularity > (1L << 31)) {
            throw new BitmapException("Granularity must be power of 2 and at least 512");
        }
    }

    /** The default granularity QEMU picks: the node's cluster size clamped to [4 KiB, 64 KiB]. */
    public static long defaultGranularity(int clusterSize) {
        if (clusterSize <= 0) {
            return 65536;
        }
        return Math.clamp(clusterSize, 4096, 65536);
    }

    /** What a command needs of a bitmap before it may touch it (QEMU's BdrvDirtyBitmapFlags). */
    public enum Check {
        /** Busy, read-only and inconsistent bitmaps are refused. */
        DEFAULT,
        /** Busy and inconsistent ones are refused; read-only ones may be read. */
        ALLOW_RO
    }

    public static void check(DirtyBitmap b, Check check) throws BitmapException {
        if (b.busy()) {
            throw new BitmapException(
                    "Bitmap '" + b.name() + "' is currently in use by another operation and cannot be used");
        }
        if (check == Check.DEFAULT && b.readOnly()) {
            throw new BitmapException("Bitmap '" + b.name() + "' is readonly and cannot be modified");
        }
        if (b.inconsistent()) {
            throw new BitmapException("Bitmap '" + b.name() + "' is inconsistent and cannot be used");
        }
    }

    /**
     * What happens to a persistent bitmap's stored copy when the bitmap goes: the image deletes it
     * (QEMU does so at once, before the bitmap leaves memory). A failure refuses the removal.
     */
    @FunctionalInterface
    public interface StoredCopy {
        void delete(DirtyBitmap b) throws BitmapException;
    }

    /**
     * block-dirty-bitmap-remove: refused while busy or read-only; after the checks a persistent
     * bitmap's stored copy is deleted.
     */
    public DirtyBitmap remove(String name) throws BitmapException {
        lock.lock();
        try {
            DirtyBitmap b = checkRemovable(name);
            stored.delete(b);
            drop(b);
            return b;
        } finally {
            lock.unlock();
        }
    }

    private DirtyBitmap checkRemovable(String name) throws BitmapException {
        DirtyBitmap b = lookup(name);
        if (b.busy()) {
            check(b, Check.ALLOW_RO);
        }
        if (b.readOnly()) {
            throw new BitmapException("Bitmap '" + name + "' is readonly and cannot be modified");
        }
        return b;
    }

    /**
     * Adds the bitmaps an image stores, as loaded at open, in the image's order (so that, each
     * going to the head, queries list them as QEMU does): persistent, recording when stored so,
     * inconsistent (and not recording) when the image marked them in use, read-only on a
     * read-only node. The image checked their names are unique.
     */
    public void load(List<StoredBitmap> stored, long nodeLength, boolean readOnly) {
        lock.lock();
        try {
            for (StoredBitmap s : stored) {
                DirtyBitmap b =
                        new DirtyBitmap(s.name(), nodeLength, s.granularity(), s.auto() && !s.inconsistent(), s.bits());
                b.setPersistent(true);
                b.setInconsistent(s.inconsistent());
                b.setReadOnly(readOnly);
                insert(b);
            }
        } finally {
            lock.unlock();
        }
    }

    /** Names of the persistent bitmaps, for a format's checks of a new one. */
    public List<String> persistentNames() {
        List<String> out = new ArrayList<>();
        for (DirtyBitmap b : list) {
            if (b.inImage()) {
                out.add(b.name());
            }
        }
        return out;
    }

    /**
     * What an image stores at close: each persistent bitmap that is neither inconsistent nor
     * read-only, newest first, recording as it records now, with its bits: the bitmap's own (the
     * caller stores them while no write can reach the node: close has drained it), or for a frozen
     * bitmap a copy with its successor merged in, so that a write during a job still running is
     * not lost.
     */
    public List<StoredBitmap> toStore() {
        lock.lock();
        try {
            List<StoredBitmap> out = new ArrayList<>();
            for (DirtyBitmap b : list) {
                if (!b.inImage() || b.inconsistent() || b.readOnly()) {
                    continue;
                }
                DirtyBitmap s = b.successor();
                HBitmap bits = b.bits();
                if (s != null) {
                    bits = b.snapshotBits();
                    bits.merge(s.bits());
                }
                out.add(new StoredBitmap(b.name(), b.granularity(), b.recording(), false, bits));
            }
            return out;
        } finally {
            lock.unlock();
        }
    }

    /** Removes a bitmap this code created (anonymous ones included) without the user's checks. */
    public void release(DirtyBitmap b) {
        lock.lock();
        try {
            drop(b);
        } finally {
            lock.unlock();
        }
    }

    public void clear(String name) throws BitmapException {
        lock.lock();
        try {
            DirtyBitmap b = lookup(name);
            check(b, Check.DEFAULT);
            b.bits().resetAll();
        } finally {
            lock.unlock();
        }
    }

    public void enable(String name) throws BitmapException {
        setEnabled(name, true);
    }

    public void disable(String name) throws BitmapException {
        setEnabled(name, false);
    }

    private void setEnabled(String name, boolean on) throws BitmapException {
        lock.lock();
        try {
            DirtyBitmap b = lookup(name);
            check(b, Check.ALLOW_RO);
            b.setEnabled(on);
        } finally {
            lock.unlock();
        }
    }

    /**
     * target |= each source, in order; all checks first, so a refusal changes nothing. Sources
     * may belong to other nodes; their lengths must equal the target's.
     */
    public void merge(DirtyBitmap target, List<DirtyBitmap> sources) throws BitmapException {
        lock.lock();
        try {
            check(target, Check.DEFAULT);
            for (DirtyBitmap s : sources) {
                check(s, Check.ALLOW_RO);
                if (s.length() != target.length()) {
                    throw new BitmapException("Bitmaps are of different sizes (destination size is " + target.length()
                            + ", source size is " + s.length() + ") and can't be merged");
                }
            }
            for (DirtyBitmap s : sources) {
                target.mergeFrom(s);
            }
        } finally {
            lock.unlock();
        }
    }

    /**
     * Freezes {@code parent} for a job: an anonymous successor of the same granularity records in
     * its place (enabled exactly when the parent was), and the parent stops recording and is busy.
     */
    public DirtyBitmap createSuccessor(DirtyBitmap parent) throws BitmapException {
        lock.lock();
        try {
            if (parent.successor() != null) {
                throw new BitmapException("Cannot create a successor for a bitmap that already has one");
            }
            check(parent, Check.DEFAULT);
            DirtyBitmap s = new DirtyBitmap(null, parent.length(), parent.granularity(), parent.enabled());
            insert(s);
            parent.setSuccessor(s);
            parent.setEnabled(false);
            return s;
        } finally {
            lock.unlock();
        }
    }

    /** Success: the successor takes the parent's name and persistence; the parent goes. */
    public DirtyBitmap abdicate(DirtyBitmap parent) {
        lock.lock();
        try {
            DirtyBitmap s = requireSuccessor(parent);
            s.setName(parent.name());
            s.setPersistent(parent.persistent());
            parent.setSuccessor(null);
            drop(parent);
            return s;
        } finally {
            lock.unlock();
        }
    }

    /** Failure: parent |= successor; the parent records again when the successor did. */
    public DirtyBitmap reclaim(DirtyBitmap parent) {
        lock.lock();
        try {
            DirtyBitmap s = requireSuccessor(parent);
            parent.mergeFrom(s);
            parent.setEnabled(s.enabled());
            parent.setSuccessor(null);
            drop(s);
            return parent;
        } finally {
            lock.unlock();
        }
    }

    /**
     * Refuses a resize while a bitmap is busy (a backup or an export holds it), or while a
     * persistent one is inconsistent or read-only, with QEMU's words;
     * the node calls this before its driver changes the size, so a refusal changes nothing.
     */
    public void checkResizable() throws BitmapException {
        lock.lock();
        try {
            for (DirtyBitmap b : list) {
                // QEMU's qcow2 refuses to resize past a persistent bitmap it could not store again
                if (b.busy() || b.persistent()) {
                    check(b, Check.DEFAULT);
                }
            }
        } finally {
            lock.unlock();
        }
    }

    /** Resizes every bitmap to the node's new length (the node is drained by the caller). */
    public void resize(long newLength) throws BitmapException {
        lock.lock();
        try {
            checkResizable();
            for (DirtyBitmap b : list) {
                b.resize(newLength);
            }
        } finally {
            lock.unlock();
        }
    }

    /** Marks a bitmap held by an operation (NBD export, transaction): busy until released. */
    public void hold(DirtyBitmap b) throws BitmapException {
        lock.lock();
        try {
            check(b, Check.ALLOW_RO);
            b.hold();
        } finally {
            lock.unlock();
        }
    }

    public void unhold(DirtyBitmap b) {
        lock.lock();
        try {
            b.release();
        } finally {
            lock.unlock();
        }
    }

    // ---- the same changes with a way back, for transactions (abort restores what prepare changed)

    /** block-dirty-bitmap-clear in a transaction: clears and returns the undo. */
    public Runnable clearUndoable(String name) throws BitmapException {
        lock.lock();
        try {
            DirtyBitmap b = lookup(name);
            check(b, Check.DEFAULT);
            var saved = b.snapshotBits();
            b.bits().resetAll();
            return () -> restore(b, saved);
        } finally {
            lock.unlock();
        }
    }

    /** block-dirty-bitmap-enable/-disable in a transaction: applies and returns the undo. */
    public Runnable setEnabledUndoable(String name, boolean on) throws BitmapException {
        lock.lock();
        try {
            DirtyBitmap b = lookup(name);
            check(b, Check.ALLOW_RO);
            boolean was = b.enabled();
            b.setEnabled(on);
            return () -> {
                lock.lock();
                try {
                    b.setEnabled(was);
                } finally {
                    lock.unlock();
                }
            };
        } finally {
            lock.unlock();
        }
    }

    /** block-dirty-bitmap-merge in a transaction: merges and returns the undo (the target's old bits). */
    public Runnable mergeUndoable(DirtyBitmap target, List<DirtyBitmap> sources) throws BitmapException {
        lock.lock();
        try {
            var saved = target.snapshotBits();
            merge(target, sources);
            return () -> restore(target, saved);
        } finally {
            lock.unlock();
        }
    }

    /**
     * block-dirty-bitmap-remove in a transaction: the checks of {@link #remove}, the stored copy
     * deleted (as QEMU's prepare does: an abort keeps the bitmap, which the image stores again at
     * close), then the bitmap is held (busy) until the commit drops it ({@link #dropHeld}) or the
     * abort lets it go.
     */
    public DirtyBitmap holdForRemoval(String name) throws BitmapException {
        lock.lock();
        try {
            DirtyBitmap b = checkRemovable(name);
            stored.delete(b);
            b.hold();
            return b;
        } finally {
            lock.unlock();
        }
    }

    /** Commits a {@link #holdForRemoval}: the bitmap goes. */
    public void dropHeld(DirtyBitmap b) {
        lock.lock();
        try {
            b.release();
            drop(b);
        } finally {
            lock.unlock();
        }
    }

    private void restore(DirtyBitmap b, HBitmap saved) {
        lock.lock();
        try {
            b.restoreBits(saved);
        } finally {
            lock.unlock();
        }
    }

    private static DirtyBitmap requireSuccessor(DirtyBitmap parent) {
        DirtyBitmap s = parent.successor();
        if (s == null) {
            throw new IllegalStateException("bitmap '" + parent.name() + "' has no successor");
        }
        return s;
    }

    private void insert(DirtyBitmap b) {
        List<DirtyBitmap> next = new ArrayList<>(list.size() + 1);
        next.add(b);
        next.addAll(list);
        publish(next);
    }

    private void drop(DirtyBitmap b) {
        List<DirtyBitmap> next = new ArrayList<>(list);
        next.remove(b);
        publish(next);
    }

    private void publish(List<DirtyBitmap> next) {
        list = List.copyOf(next);
        marking = next.toArray(new DirtyBitmap[0]);
    }
}
