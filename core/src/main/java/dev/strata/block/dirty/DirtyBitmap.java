package dev.strata.block.dirty;

import dev.strata.bitmap.HBitmap;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * A dirty bitmap: one bit per {@code granularity} bytes of a node, set when the guest writes
 * there while the bitmap records. Named bitmaps are what users create; anonymous ones serve jobs
 * (a backup's successor).
 *
 * <p>Invariants: a bitmap with a successor is busy and not recording by itself; its successor
 * records in its place (QEMU's "frozen"). {@code busy} is true exactly while a successor exists or
 * something (an NBD export, a transaction) holds it.
 *
 * <p>Concurrency: {@link #markDirty} runs on the guest's write path without a lock; it reads the
 * volatile {@code enabled} flag and sets bits atomically. Every other state change happens under
 * the owning {@link DirtyBitmaps}' lock. A write racing with {@code disable} may or may not be
 * recorded, as in QEMU; a write that completed before {@code disable} returned always is.
 */
public final class DirtyBitmap {
    // set at creation, never changed
    private final long granularity;
    private final int granularityBits;

    // guarded by the owning DirtyBitmaps' lock; volatile where the write path reads them
    private volatile HBitmap bits;
    private volatile long length;
    private volatile boolean enabled;
    private String name;
    private boolean persistent;
    private boolean inconsistent;
    private boolean readOnly;
    private int holds;
    private DirtyBitmap successor;

    DirtyBitmap(String name, long length, long granularity, boolean enabled) {
        this(name, length, granularity, enabled, null);
    }

    /** A bitmap with the given bits (one per granularity of {@code length}), or clean ones when null. */
    DirtyBitmap(String name, long length, long granularity, boolean enabled, HBitmap bits) {
        if (Long.bitCount(granularity) != 1) {
            throw new IllegalArgumentException("granularity must be a power of two: " + granularity);
        }
        this.name = name;
        this.granularity = granularity;
        this.granularityBits = Long.numberOfTrailingZeros(granularity);
        this.length = length;
        this.bits = bits != null ? bits : new HBitmap(chunks(length));
        if (this.bits.size() != chunks(length)) {
            throw new IllegalArgumentException(
                    "bitmap of " + this.bits.size() + " bits for " + chunks(length) + " chunks");
        }
        this.enabled = enabled;
    }

    private long chunks(long bytes) {
        return (bytes + granularity - 1) >>> granularityBits;
    }

    /** The user's name, or null for an anonymous bitmap. */
    public String name() {
        return name;
    }

    public long granularity() {
        return granularity;
    }

    /** Length in bytes of the node this bitmap covers. */
    public long length() {
        return length;
    }

    /** Whether this bitmap itself records writes (QEMU's "enabled"). */
    public boolean enabled() {
        return enabled;
    }

    /** QMP's "recording": enabled, or frozen with a recording successor. */
    public boolean recording() {
        DirtyBitmap s = successor;
        return enabled || (s != null && s.enabled);
    }

    public boolean busy() {
        return successor != null || holds > 0;
    }

    public boolean persistent() {
        return persistent;
    }

    /**
     * Whether the image stores this bitmap: persistent and named (a frozen bitmap's successor
     * shares its persistence, not its name).
     */
    public boolean inImage() {
        return persistent && name != null;
    }

    public boolean inconsistent() {
        return inconsistent;
    }

    public boolean readOnly() {
        return readOnly;
    }

    public DirtyBitmap successor() {
        return successor;
    }

    /**
     * Dirty bytes as QEMU counts them: set chunks times granularity, so a dirty short last chunk
     * counts a whole granularity (measured on qemu-storage-daemon 7.2).
     */
    public long count() {
        return bits.count() << granularityBits;
    }

    public boolean isDirty(long offset) {
        return offset < length && bits.get(offset >>> granularityBits);
    }

    /** Marks {@code [offset, offset+len)} dirty, rounded out to whole chunks, if recording. */
    public void markDirty(long offset, long len) {
        if (enabled && len > 0) {
            setDirty(offset, len);
        }
    }

    /** Sets bits regardless of the recording state (merges, restores, tests). */
    public void setDirty(long offset, long len) {
        HBitmap b = bits;
        long first = offset >>> granularityBits;
        long last = Math.min(chunks(offset + len), b.size());
        if (last > first) {
            b.set(first, last - first);
        }
    }

    /** Clears the chunks wholly or partly inside the range (a backup clears what it copied). */
    public void resetDirty(long offset, long len) {
        HBitmap b = bits;
        long first = offset >>> granularityBits;
        long last = Math.min(chunks(offset + len), b.size());
        if (last > first) {
            b.reset(first, last - first);
        }
    }

    /** Start of the next dirty chunk at or after {@code offset}, or -1. */
    public long nextDirty(long offset) {
        if (offset >= length) {
            return -1;
        }
        long bit = bits.nextSet(offset >>> granularityBits);
        return bit < 0 ? -1 : Math.max(offset, bit << granularityBits);
    }

    /** Start of the next clean chunk at or after {@code offset}, or {@link #length()} when none. */
    public long nextClean(long offset) {
        if (offset >= length) {
            return length;
        }
        long bit = bits.nextClear(offset >>> granularityBits);
        return bit < 0 ? length : Math.max(offset, Math.min(length, bit << granularityBits));
    }

    /**
     * SHA-256 of the leaf words as little-endian 64-bit words, bit i of the array being chunk i:
     * the value QEMU's {@code x-debug-block-dirty-bitmap-sha256} returns for the same bits.
     */
    public String sha256() {
        HBitmap b = bits;
        // QEMU's bottom level has at least one word, so an empty bitmap (a node of size 0) hashes one
        long words = Math.max(1, (b.size() + 63) / 64);
        MessageDigest md;
        try {
            md = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        byte[] block = new byte[8 * 1024];
        int fill = 0;
        for (long w = 0; w < words; w++) {
            long value = b.word(w);
            for (int i = 0; i < 8; i++) {
                block[fill++] = (byte) (value >>> (8 * i));
            }
            if (fill == block.length) {
                md.update(block, 0, fill);
                fill = 0;
            }
        }
        md.update(block, 0, fill);
        return HexFormat.of().formatHex(md.digest());
    }

    HBitmap bits() {
        return bits;
    }

    /** Memory the bits take now (pages are allocated as they are first written). */
    public long memoryBytes() {
        return bits.memoryBytes();
    }

    void setName(String name) {
        this.name = name;
    }

    void setEnabled(boolean enabled) {
        this.enabled = enabled;
    }

    void setPersistent(boolean persistent) {
        this.persistent = persistent;
    }

    void setInconsistent(boolean inconsistent) {
        this.inconsistent = inconsistent;
    }

    void setReadOnly(boolean readOnly) {
        this.readOnly = readOnly;
    }

    void setSuccessor(DirtyBitmap successor) {
        this.successor = successor;
    }

    void hold() {
        holds++;
    }

    void release() {
        if (holds == 0) {
            throw new IllegalStateException("bitmap '" + name + "' released more often than held");
        }
        holds--;
    }

    /** ORs another bitmap's dirty bytes in; granularities may differ (each set chunk maps by bytes). */
    void mergeFrom(DirtyBitmap other) {
        if (other.granularity == granularity && other.bits.size() == bits.size()) {
            bits.merge(other.bits);
            return;
        }
        for (long off = other.nextDirty(0); off >= 0 && off < other.length; ) {
            long end = other.nextClean(off);
            setDirty(off, end - off);
            off = end >= other.length ? -1 : other.nextDirty(end);
        }
    }

    /** A copy of the bits, for restoring a merge target when a later step fails. */
    HBitmap snapshotBits() {
        HBitmap copy = new HBitmap(bits.size());
        copy.merge(bits);
        return copy;
    }

    void restoreBits(HBitmap saved) {
        this.bits = saved;
    }

    /**
     * Resizes to a new node length: bits past the new end are dropped, new chunks start clean.
     * The caller drains the node first, so no write marks the old bits meanwhile.
     */
    void resize(long newLength) {
        HBitmap old = bits;
        HBitmap grown = new HBitmap(chunks(newLength));
        for (long bit = old.nextSet(0); bit >= 0 && bit < grown.size(); ) {
            long clear = old.nextClear(bit);
            long end = Math.min(clear < 0 ? old.size() : clear, grown.size());
            grown.set(bit, end - bit);
            bit = end >= old.size() || end >= grown.size() ? -1 : old.nextSet(end);
        }
        this.bits = grown;
        this.length = newLength;
    }

    @Override
    public String toString() {
        return "DirtyBitmap[" + (name == null ? "<anonymous>" : name) + ", granularity " + granularity + ", count "
                + count() + (enabled ? ", recording" : "") + (busy() ? ", busy" : "") + "]";
    }
}
