package dev.strata.block.qcow2;

import dev.strata.bitmap.HBitmap;
import dev.strata.block.BlockException;
import dev.strata.block.dirty.StoredBitmap;
import dev.strata.block.qcow2.Qcow2CheckBitmaps.Bitmap;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The persistent bitmaps of a qcow2 image (the spec's "Bitmaps"), kept as QEMU keeps them: loaded
 * at open, marked {@code in_use} on disk while the image is open for writing, stored at close, and
 * deleted from the image at once when the user removes one.
 *
 * <p>Crash consistency: apart from the {@code in_use} flags (see {@link #markInUse}), nothing the
 * header points to is changed in place. A new directory, and for a store the new tables and data
 * clusters, go to freshly allocated clusters and are flushed; one header write then switches to
 * the new directory and is flushed; only then are the old clusters freed. A crash leaves the old directory or the new one, and at worst leaked clusters. While the
 * image is open for writing every bitmap it holds is marked {@code in_use}, so a crash before the
 * store leaves them inconsistent, which is what QEMU then reports.
 *
 * <p>Concurrency: not thread-safe; the driver calls it under its exclusive metadata lock (or at
 * open, before anyone else has the driver). {@link #directory()} may be read from any thread.
 */
final class Qcow2BitmapStore {
    // set at open, never changed
    private final ImageFile file;
    private final int clusterSize;

    /** The directory the header points to now, as parsed; empty when there is none or it is stale. */
    private volatile List<Bitmap> directory;

    Qcow2BitmapStore(ImageFile file, int clusterSize, List<Bitmap> directory) {
        this.file = file;
        this.clusterSize = clusterSize;
        this.directory = List.copyOf(directory);
    }

    /**
     * One cluster of bitmap data as bytes (little-endian words, as the image stores them) and as
     * words, shared by every bitmap of one load or store instead of allocated for each.
     */
    private record Scratch(ByteBuffer cluster, long[] words) {
        Scratch(int clusterSize) {
            this(ByteBuffer.allocate(clusterSize).order(ByteOrder.LITTLE_ENDIAN), new long[clusterSize / 8]);
        }
    }

    /** The bitmaps the image lists now, flags as on disk (qemu-img info's list). */
    List<Bitmap> directory() {
        return directory;
    }

    // ---------------------------------------------------------------------------------------
    // load

    /**
     * Every listed bitmap with its bits: an entry marked {@code in_use} loads empty and
     * inconsistent, as QEMU loads it. Tables and data are checked as QEMU's load checks them. A
     * directory whose bitmaps would need more memory than {@code memoryBudget} bytes is refused
     * before any bits are read (a hostile image must not exhaust the heap).
     */
    List<StoredBitmap> load(long virtualSize, long memoryBudget) throws IOException {
        List<long[]> tables = new ArrayList<>();
        long need = 0;
        for (Bitmap bm : directory) {
            if (bm.inUse()) {
                // its data is unusable: QEMU reads neither its table nor its data
                tables.add(null);
                continue;
            }
            long[] table = Qcow2CheckBitmaps.readTable(file::read, bm, clusterSize, "");
            if (bm.tableSize() != Qcow2CheckBitmaps.expectedTableSize(virtualSize, clusterSize, bm.granularityBits())) {
                throw new BlockException(
                        "Could not read bitmap '" + bm.name() + "' from image: Invalid argument",
                        BlockException.EINVAL);
            }
            tables.add(table);
            for (long entry : table) {
                // a data cluster or an all-ones entry fills one cluster's worth of bits in memory
                need += entry != 0 ? clusterSize : 0;
            }
        }
        if (need > memoryBudget) {
            throw new BlockException(
                    "Could not load the bitmaps of '" + file.node().filename() + "': they would take " + (need >> 20)
                            + " MiB of memory, more than the " + (memoryBudget >> 20) + " MiB Strata allows them",
                    BlockException.ENOMEM);
        }
        List<StoredBitmap> out = new ArrayList<>();
        Scratch scratch = null;
        Set<String> names = new HashSet<>();
        for (int i = 0; i < directory.size(); i++) {
            Bitmap bm = directory.get(i);
            if (!names.add(bm.name())) {
                throw new BlockException("Bitmap already exists: " + bm.name(), BlockException.EINVAL);
            }
            long granularity = 1L << bm.granularityBits();
            long chunks = (virtualSize + granularity - 1) >>> bm.granularityBits();
            HBitmap bits = new HBitmap(chunks);
            if (!bm.inUse()) {
                if (scratch == null) {
                    scratch = new Scratch(clusterSize);
                }
                readBits(bm, tables.get(i), bits, scratch);
            }
            out.add(new StoredBitmap(bm.name(), granularity, bm.auto(), bm.inUse(), bits));
        }
        return out;
    }

    /** Fills {@code bits} from the data clusters the table points to; bits past the disk's end are ignored. */
    private void readBits(Bitmap bm, long[] table, HBitmap bits, Scratch scratch) throws IOException {
        long bitsPerCluster = clusterSize * 8L;
        ByteBuffer buf = scratch.cluster;
        long[] words = scratch.words;
        for (int i = 0; i < table.length; i++) {
            long first = i * bitsPerCluster;
            if (first >= bits.size()) {
                break;
            }
            long offset = table[i] & Qcow2CheckBitmaps.ENTRY_OFFSET_MASK;
            if (offset == 0) {
                if ((table[i] & Qcow2CheckBitmaps.ENTRY_ALL_ONES) != 0) {
                    bits.set(first, Math.min(bitsPerCluster, bits.size() - first));
                }
                continue;
            }
            file.checkInside("Data of bitmap '" + bm.name() + "'", offset, clusterSize);
            buf.clear();
            file.read(offset, buf);
            buf.flip();
            buf.asLongBuffer().get(words);
            bits.orWords(first >>> 6, words, words.length);
        }
    }

    // ---------------------------------------------------------------------------------------
    // checks

    /**
     * QEMU's checks of a new persistent bitmap for this image, after the in-memory duplicate check
     * (the caller's), each refusal in QEMU's words without the "Can't make bitmap ... persistent"
     * the caller puts before it. {@code persistentNames} are the node's persistent bitmaps now.
     */
    static void checkNew(Qcow2Header h, long virtualSize, String name, long granularity, List<String> persistentNames)
            throws BlockException {
        if (h.version() < 3) {
            throw new BlockException("Cannot store dirty bitmaps in qcow2 v2 files", BlockException.ENOTSUP);
        }
        int bits = Long.numberOfTrailingZeros(granularity);
        if (bits > Qcow2CheckBitmaps.MAX_GRANULARITY_BITS) {
            throw new BlockException("Granularity exceeds maximum (2147483648 bytes)", BlockException.EINVAL);
        }
        if (bits < Qcow2CheckBitmaps.MIN_GRANULARITY_BITS) {
            throw new BlockException("Granularity is under minimum (512 bytes)", BlockException.EINVAL);
        }
        long chunks = (virtualSize + granularity - 1) >>> bits;
        long bitmapBytes = (chunks + 7) >>> 3;
        if (bitmapBytes > Qcow2CheckBitmaps.MAX_PHYS_BYTES
                || bitmapBytes > Qcow2CheckBitmaps.MAX_TABLE_ENTRIES * h.clusterSize()) {
            throw new BlockException(
                    "Too much space will be occupied by the bitmap. Use larger granularity", BlockException.EINVAL);
        }
        if (name.getBytes(StandardCharsets.UTF_8).length > Qcow2CheckBitmaps.MAX_NAME) {
            throw new BlockException(
                    "Name length exceeds maximum (" + Qcow2CheckBitmaps.MAX_NAME + " characters)",
                    BlockException.EINVAL);
        }
        long count = persistentNames.size() + 1L;
        long dirSize = Qcow2CheckBitmaps.entrySize(name);
        for (String n : persistentNames) {
            dirSize += Qcow2CheckBitmaps.entrySize(n);
        }
        if (count > Qcow2CheckImage.MAX_BITMAPS) {
            throw new BlockException("Maximum number of persistent bitmaps is already reached", BlockException.EINVAL);
        }
        if (dirSize > Qcow2CheckImage.MAX_BITMAP_DIRECTORY_SIZE) {
            throw new BlockException("Not enough space in the bitmap directory", BlockException.EINVAL);
        }
    }

    // ---------------------------------------------------------------------------------------
    // changes

    /**
     * A writable open: every bitmap not yet marked is marked {@code in_use} on disk before the
     * first write, so that a crash leaves them inconsistent rather than silently stale. Only the
     * flags change, so the directory is rewritten in place (as QEMU does; the file does not grow)
     * and flushed before the open returns: a crash during the rewrite leaves each entry with its
     * old flags or its new ones, and an entry still unmarked is then still true, since no guest
     * write has happened yet. Unlike QEMU, the header is not touched (QEMU clears the bitmaps
     * autoclear bit around the rewrite, and a crash in between loses every bitmap). Returns the
     * header, unchanged.
     */
    Qcow2Header markInUse(Qcow2Header h) throws IOException {
        if (directory.stream().allMatch(Bitmap::inUse)) {
            return h;
        }
        List<Bitmap> marked = new ArrayList<>();
        for (Bitmap b : directory) {
            marked.add(new Bitmap(b.name(), b.tableOffset(), b.tableSize(), b.granularityBits(), true, b.auto()));
        }
        byte[] dir = Qcow2CheckBitmaps.encodeDirectory(marked);
        file.write(h.bitmaps().orElseThrow().directoryOffset(), dir, 0, dir.length);
        file.flush();
        directory = List.copyOf(marked);
        return h;
    }

    /**
     * block-dirty-bitmap-remove of a persistent bitmap: the image stops listing it at once and its
     * clusters are freed; a bitmap the image does not list yet (added since the open) is no error.
     */
    Qcow2Header remove(Qcow2Header h, Refcounts refcounts, String name) throws IOException {
        List<Bitmap> kept = new ArrayList<>();
        Bitmap gone = null;
        for (Bitmap b : directory) {
            if (gone == null && b.name().equals(name)) {
                gone = b;
            } else {
                kept.add(b);
            }
        }
        if (gone == null) {
            return h;
        }
        return switchDirectory(h, refcounts, kept, List.of(gone));
    }

    /**
     * Close: writes {@code bitmaps} (the node's persistent, consistent bitmaps, newest first) with
     * their current bits and recording state, {@code in_use} clear. Entries of the directory that
     * are not among them (bitmaps that were inconsistent at open) stay as they are; new bitmaps go
     * after the listed ones, in the order given, as QEMU orders them.
     */
    Qcow2Header store(Qcow2Header h, Refcounts refcounts, List<StoredBitmap> bitmaps) throws IOException {
        if (bitmaps.isEmpty()) {
            return h;
        }
        Map<String, StoredBitmap> byName = new HashMap<>();
        for (StoredBitmap b : bitmaps) {
            byName.put(b.name(), b);
        }
        Scratch scratch = new Scratch(clusterSize);
        List<Bitmap> next = new ArrayList<>();
        List<Bitmap> replaced = new ArrayList<>();
        Set<String> listed = new HashSet<>();
        for (Bitmap old : directory) {
            listed.add(old.name());
            StoredBitmap b = byName.get(old.name());
            if (b == null) {
                next.add(old);
            } else {
                next.add(writeBitmap(refcounts, b, scratch));
                replaced.add(old);
            }
        }
        for (StoredBitmap b : bitmaps) {
            if (!listed.contains(b.name())) {
                next.add(writeBitmap(refcounts, b, scratch));
            }
        }
        return switchDirectory(h, refcounts, next, replaced);
    }

    /**
     * Writes one bitmap's data clusters (only those holding a set bit; the others stay entry 0,
     * read as zeros) and its table; returns its directory entry.
     */
    private Bitmap writeBitmap(Refcounts refcounts, StoredBitmap b, Scratch scratch) throws IOException {
        HBitmap bits = b.bits();
        int granularityBits = Long.numberOfTrailingZeros(b.granularity());
        long chunks = bits.size();
        long virtualSize = chunks << granularityBits;
        int tableSize = (int) Qcow2CheckBitmaps.expectedTableSize(virtualSize, clusterSize, granularityBits);
        long bitsPerCluster = clusterSize * 8L;
        ByteBuffer data = scratch.cluster;
        long[] words = scratch.words;
        ByteBuffer table = ByteBuffer.allocate(Math.max(8, tableSize * 8));
        for (int i = 0; i < tableSize; i++) {
            long first = i * bitsPerCluster;
            long next = first < chunks ? bits.nextSet(first) : -1;
            if (next < 0 || next >= first + bitsPerCluster) {
                continue;
            }
            bits.copyWords(first >>> 6, words, words.length);
            data.clear();
            data.asLongBuffer().put(words);
            long offset = refcounts.allocate();
            file.write(offset, data);
            table.putLong(i * 8, offset);
        }
        long tableOffset = 0;
        if (tableSize > 0) {
            int tableClusters = (tableSize * 8 + clusterSize - 1) / clusterSize;
            tableOffset = refcounts.allocateContiguous(tableClusters);
            table.limit(tableSize * 8);
            file.write(tableOffset, table);
        }
        return new Bitmap(b.name(), tableOffset, tableSize, granularityBits, false, b.auto());
    }

    /**
     * Points the header at a new directory listing {@code entries} (no extension when empty), then
     * frees the old directory and the tables and data of {@code dropped}, in the order the class
     * comment gives.
     */
    private Qcow2Header switchDirectory(Qcow2Header h, Refcounts refcounts, List<Bitmap> entries, List<Bitmap> dropped)
            throws IOException {
        Qcow2Header.BitmapsExtension ext = null;
        if (!entries.isEmpty()) {
            byte[] dir = Qcow2CheckBitmaps.encodeDirectory(entries);
            long offset = refcounts.allocateContiguous((dir.length + clusterSize - 1) / clusterSize);
            file.write(offset, dir, 0, dir.length);
            ext = new Qcow2Header.BitmapsExtension(entries.size(), 0, dir.length, offset);
        }
        // what the new header points to is durable before the header is written
        file.deferred().writeBack();
        file.flush();
        Qcow2Header next = h.withBitmaps(ext).withRefcountTable(refcounts.tableOffset(), refcounts.tableClusters());
        file.writeHeader(next);
        file.flush();
        Qcow2Header.BitmapsExtension old = h.bitmaps().orElse(null);
        if (old != null && !directory.isEmpty()) {
            refcounts.free(old.directoryOffset(), old.directorySize());
        }
        directory = List.copyOf(entries);
        for (Bitmap b : dropped) {
            try {
                freeBitmap(refcounts, b);
            } catch (BlockException e) {
                // a table that no longer reads right (an entry left in use by a crash may hold
                // anything): its clusters stay leaked, as QEMU leaves them; the change is done
            }
        }
        return next;
    }

    private void freeBitmap(Refcounts refcounts, Bitmap b) throws IOException {
        for (long entry : Qcow2CheckBitmaps.readTable(file::read, b, clusterSize, "")) {
            long offset = entry & Qcow2CheckBitmaps.ENTRY_OFFSET_MASK;
            if (offset != 0) {
                refcounts.free(offset, clusterSize);
            }
        }
        refcounts.free(b.tableOffset(), b.tableSize() * 8);
    }
}
