package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;

/**
 * Computes the refcount every host cluster should have by walking all metadata (QEMU's
 * calculate_refcounts): the header, the active L1 table and every L2 table and data cluster it
 * reaches, the snapshots' L1 tables, the snapshot table, the refcount table, the bitmaps and the
 * refcount blocks. On the way it reports the problems it sees in the tables, in QEMU's words.
 *
 * <p>Bounds: every range counted must end less than one cluster past the end of the file (QEMU's
 * rule), so the computed table never covers more than the file; and the L2 tables read in total
 * may not exceed what the file could legitimately hold once per L1 table (active and snapshots),
 * so an L1 table pointing millions of times at one L2 table ends the check with an error instead of
 * running for hours.
 */
final class Qcow2CheckWalk {
    private static final long L2_BITMAP_ALL_ALLOC = 0xffff_ffffL;
    private static final long L2_BITMAP_ALL_ZEROES = 0xffff_ffffL << 32;

    // set at construction, never changed
    private final Qcow2CheckImage img;
    private final Qcow2CheckRefcounts counts;
    private final Qcow2CheckTally res;
    private final Qcow2Check.RepairMode fix;
    private final Qcow2CheckSnapshots.Table snapshots;
    private final List<Qcow2CheckBitmaps.Bitmap> bitmaps;
    private final ByteBuffer l2Buffer;
    private final ByteBuffer l1Buffer;

    // changed by the walk
    private boolean rebuild;
    private long l2BytesLeft;
    private Qcow2CheckOverlap overlap;

    Qcow2CheckWalk(
            Qcow2CheckImage img,
            Qcow2CheckRefcounts counts,
            Qcow2CheckTally res,
            Qcow2Check.RepairMode fix,
            Qcow2CheckSnapshots.Table snapshots,
            List<Qcow2CheckBitmaps.Bitmap> bitmaps) {
        this.img = img;
        this.counts = counts;
        this.res = res;
        this.fix = fix;
        this.snapshots = snapshots;
        this.bitmaps = bitmaps;
        this.l2Buffer = ByteBuffer.allocate(img.clusterSize);
        this.l1Buffer = ByteBuffer.allocate(Math.max(img.clusterSize, 1 << 16));
    }

    Qcow2CheckTally tally() {
        return res;
    }

    /** Whether a problem was found that only rebuilding the refcount structure can repair. */
    boolean rebuild() {
        return rebuild;
    }

    /** Records that the comparison found a used cluster with no stored refcount. */
    void markRebuild() {
        rebuild = true;
    }

    /** Counts every reference the metadata makes into {@link #counts}. */
    void calculate() throws IOException {
        // legitimately every L2 table lies in the file and is read once per L1 table using it
        l2BytesLeft =
                (img.fileLength() + (1L << 30)) * (2 + snapshots.snapshots().size());
        incRefcounts(0, img.clusterSize);
        checkL1(img.l1TableOffset, Integer.toUnsignedLong(img.l1Size), true);

        if (img.hasDataFile && !snapshots.snapshots().isEmpty()) {
            img.log.message("ERROR " + snapshots.snapshots().size() + " snapshots in image with data file");
            res.corruptions++;
        }
        for (Qcow2CheckSnapshots.Snapshot sn : snapshots.snapshots()) {
            if ((sn.l1TableOffset() & (img.clusterSize - 1)) != 0) {
                img.log.message("ERROR snapshot " + sn.id() + " (" + sn.name() + ") l1_offset="
                        + Qcow2CheckImage.hex(sn.l1TableOffset())
                        + ": L1 table is not cluster aligned; snapshot table entry corrupted");
                res.corruptions++;
                continue;
            }
            if (sn.l1Size() > Qcow2CheckSnapshots.MAX_L1_ENTRIES) {
                img.log.message("ERROR snapshot " + sn.id() + " (" + sn.name() + ") l1_size="
                        + Qcow2CheckImage.hex(sn.l1Size())
                        + ": L1 table is too large; snapshot table entry corrupted");
                res.corruptions++;
                continue;
            }
            checkL1(sn.l1TableOffset(), sn.l1Size(), false);
        }
        incRefcounts(snapshots.offset(), snapshots.size());
        incRefcounts(img.reftableOffset, img.storedReftableSize() * 8);
        Qcow2CheckBitmaps.count(img, this, bitmaps);
        checkRefblocks();
    }

    /**
     * Adds one reference to every cluster of {@code [offset, offset + size)} (QEMU's
     * qcow2_inc_refcounts_imrt). A range ending a cluster or more past the end of the file is a
     * corruption and is not counted.
     */
    void incRefcounts(long offset, long size) throws IOException {
        if (size <= 0) {
            return;
        }
        long fileLength = img.fileLength();
        if (offset < 0 || offset > Long.MAX_VALUE - size || offset + size - fileLength >= img.clusterSize) {
            img.log.message("ERROR: counting reference for region exceeding the end of the file by one cluster"
                    + " or more: offset 0x" + Long.toHexString(offset) + " size 0x" + Long.toHexString(size));
            res.corruptions++;
            return;
        }
        long mask = img.clusterSize - 1L;
        long last = (offset + size - 1) & ~mask;
        for (long c = offset & ~mask; c <= last; c += img.clusterSize) {
            long k = c >>> img.clusterBits;
            try {
                if (k >= counts.size()) {
                    counts.ensureSize(k + 1);
                }
                long r = counts.get(k);
                if (r == counts.max()) {
                    img.log.message("ERROR: overflow cluster offset=0x" + Long.toHexString(c));
                    img.log.message("Use qemu-img amend to increase the refcount entry width or qemu-img convert"
                            + " to create a clean copy if the image cannot be opened for writing");
                    res.corruptions++;
                    continue;
                }
                counts.set(k, r + 1);
            } catch (Qcow2CheckRefcounts.BudgetExceeded e) {
                res.checkErrors++;
                throw new BlockException("Cannot allocate memory", Qcow2Check.ENOMEM);
            }
        }
    }

    /** Counts an L1 table, its L2 tables and their clusters (QEMU's check_refcounts_l1). */
    private void checkL1(long l1Offset, long l1Size, boolean active) throws IOException {
        if (l1Size == 0) {
            return;
        }
        incRefcounts(l1Offset, l1Size * 8);
        for (long i = 0; i < l1Size; ) {
            int n = (int) Math.min(l1Buffer.capacity() / 8, l1Size - i);
            l1Buffer.clear().limit(n * 8);
            try {
                img.read(l1Offset + i * 8, l1Buffer);
            } catch (IOException e) {
                img.log.message("ERROR: I/O error in check_refcounts_l1");
                res.checkErrors++;
                throw e;
            }
            for (int j = 0; j < n; j++) {
                long entry = l1Buffer.getLong(j * 8);
                if (entry == 0) {
                    continue;
                }
                if ((entry & Qcow2CheckImage.L1E_RESERVED_MASK) != 0) {
                    img.log.message("ERROR found L1 entry with reserved bits set: " + Long.toHexString(entry));
                    res.corruptions++;
                }
                long l2Offset = entry & Qcow2CheckImage.L1E_OFFSET_MASK;
                incRefcounts(l2Offset, img.clusterSize);
                if ((l2Offset & (img.clusterSize - 1)) != 0) {
                    img.log.message("ERROR l2_offset=" + Long.toHexString(l2Offset)
                            + ": Table is not cluster aligned; L1 entry corrupted");
                    res.corruptions++;
                }
                checkL2(l2Offset, active);
            }
            i += n;
        }
    }

    /** Counts the clusters an L2 table references and checks its entries (QEMU's check_refcounts_l2). */
    private void checkL2(long l2Offset, boolean active) throws IOException {
        if (l2Offset >= img.fileLength()
                && l2Offset >= 0
                && l2Offset <= Qcow2CheckImage.MAX_REQUEST_END - img.clusterSize) {
            // a table wholly past the end of the file reads as zeros: every entry is unallocated
            return;
        }
        l2BytesLeft -= img.clusterSize;
        if (l2BytesLeft < 0) {
            img.log.message("ERROR the L1 tables reference more L2 tables than the image can hold");
            res.checkErrors++;
            throw new BlockException("File too large", BlockException.EFBIG);
        }
        ByteBuffer l2 = l2Buffer.clear();
        try {
            img.read(l2Offset, l2);
        } catch (IOException e) {
            img.log.message("ERROR: I/O error in check_refcounts_l2");
            res.checkErrors++;
            throw e;
        }
        long nextContiguous = 0;
        for (int i = 0; i < img.l2Entries; i++) {
            long entry = l2.getLong(i * img.l2EntryBytes);
            long bitmap = img.extendedL2 ? l2.getLong(i * img.l2EntryBytes + 8) : 0;
            Qcow2CheckImage.ClusterType type = img.clusterType(entry);
            if (type != Qcow2CheckImage.ClusterType.COMPRESSED
                    && (entry & Qcow2CheckImage.L2E_STD_RESERVED_MASK) != 0) {
                img.log.message("ERROR found l2 entry with reserved bits set: " + Long.toHexString(entry));
                res.corruptions++;
            }
            switch (type) {
                case COMPRESSED -> {
                    if ((entry & Qcow2CheckImage.OFLAG_COPIED) != 0) {
                        img.log.message("ERROR: coffset=0x" + Long.toHexString(img.compressedOffset(entry))
                                + ": copied flag must never be set for compressed clusters");
                        entry &= ~Qcow2CheckImage.OFLAG_COPIED;
                        res.corruptions++;
                    }
                    if (img.hasDataFile) {
                        img.log.message("ERROR compressed cluster " + i + " with data file, entry=0x"
                                + Long.toHexString(entry));
                        res.corruptions++;
                        continue;
                    }
                    if (bitmap != 0) {
                        img.log.message("ERROR compressed cluster " + i
                                + " with non-zero subcluster allocation bitmap, entry=0x" + Long.toHexString(entry));
                        res.corruptions++;
                        continue;
                    }
                    incRefcounts(img.compressedOffset(entry), img.compressedSize(entry));
                    if (active) {
                        res.allocatedClusters++;
                        res.compressedClusters++;
                        // QEMU counts compressed clusters as fragmented by nature
                        res.fragmentedClusters++;
                    }
                }
                case ZERO_ALLOC, NORMAL -> {
                    long offset = entry & Qcow2CheckImage.L2E_OFFSET_MASK;
                    if (((bitmap >>> 32) & bitmap) != 0) {
                        res.corruptions++;
                        img.log.message("ERROR offset=" + Long.toHexString(offset)
                                + ": Allocated cluster has corrupted subcluster allocation bitmap");
                    }
                    if ((offset & (img.clusterSize - 1)) != 0) {
                        res.corruptions++;
                        boolean containsData = img.extendedL2
                                ? (bitmap & L2_BITMAP_ALL_ALLOC) != 0
                                : (entry & Qcow2CheckImage.OFLAG_ZERO) == 0;
                        if (!containsData) {
                            boolean repairing = fix == Qcow2Check.RepairMode.ALL;
                            img.log.message((repairing ? "Repairing" : "ERROR") + " offset="
                                    + Long.toHexString(offset)
                                    + ": Preallocated cluster is not properly aligned; L2 entry corrupted.");
                            if (repairing && fixL2EntryByZero(l2Offset, l2, i, active)) {
                                // the entry no longer references the cluster
                                continue;
                            }
                        } else {
                            img.log.message("ERROR offset=" + Long.toHexString(offset)
                                    + ": Data cluster is not properly aligned; L2 entry corrupted.");
                        }
                    }
                    if (active) {
                        res.allocatedClusters++;
                        if (nextContiguous != 0 && offset != nextContiguous) {
                            res.fragmentedClusters++;
                        }
                        nextContiguous = offset + img.clusterSize;
                    }
                    if (!img.hasDataFile) {
                        incRefcounts(offset, img.clusterSize);
                    }
                }
                case ZERO_PLAIN -> {
                    // nothing is referenced
                }
                case UNALLOCATED -> {
                    if ((bitmap & L2_BITMAP_ALL_ALLOC) != 0) {
                        res.corruptions++;
                        img.log.message("ERROR: Unallocated cluster has non-zero subcluster allocation map");
                    }
                }
            }
        }
    }

    /**
     * Turns a misaligned preallocated zero cluster into a plain zero cluster (QEMU's
     * fix_l2_entry_by_zero). Returns whether it was fixed; a write that would hit other metadata
     * ends the check, as in QEMU.
     */
    private boolean fixL2EntryByZero(long l2Offset, ByteBuffer l2, int index, boolean active) throws IOException {
        int pos = index * img.l2EntryBytes;
        if (img.extendedL2) {
            long bitmap = l2.getLong(pos + 8);
            bitmap = (bitmap | (bitmap << 32)) & L2_BITMAP_ALL_ZEROES;
            l2.putLong(pos + 8, bitmap);
            l2.putLong(pos, 0);
        } else {
            l2.putLong(pos, Qcow2CheckImage.OFLAG_ZERO);
        }
        long at = l2Offset + pos;
        Qcow2CheckOverlap.Kind hit = active
                ? overlap().overlaps(at, img.l2EntryBytes, Qcow2CheckOverlap.Kind.ACTIVE_L2)
                : overlap().overlaps(at, img.l2EntryBytes);
        if (hit != null) {
            img.signalCorruption("Preventing invalid write on metadata (overlaps with " + hit.qemuName + ")");
            img.log.message("ERROR: Overlap check failed");
            res.checkErrors++;
            throw new BlockException("Input/output error", BlockException.EIO);
        }
        try {
            img.write(at, l2.array(), pos, img.l2EntryBytes);
            img.sync();
        } catch (IOException e) {
            img.log.message(
                    "ERROR: Failed to overwrite L2 table entry: " + Qcow2CheckResult.strerror(Qcow2Check.errno(e)));
            res.checkErrors++;
            return false;
        }
        res.corruptions--;
        res.corruptionsFixed++;
        return true;
    }

    private Qcow2CheckOverlap overlap() {
        if (overlap == null) {
            overlap = new Qcow2CheckOverlap(img, snapshots);
        }
        return overlap;
    }

    /** Checks the refcount table's entries and counts the refcount blocks (QEMU's check_refblocks). */
    private void checkRefblocks() throws IOException {
        for (int i = 0; i < img.reftable.length; i++) {
            long entry = img.reftable[i];
            long offset = entry & Qcow2CheckImage.REFT_OFFSET_MASK;
            long cluster = offset >>> img.clusterBits;
            if ((entry & Qcow2CheckImage.REFT_RESERVED_MASK) != 0) {
                img.log.message("ERROR refcount table entry " + i + " has reserved bits set");
                res.corruptions++;
                rebuild = true;
                continue;
            }
            if ((offset & (img.clusterSize - 1)) != 0) {
                img.log.message(
                        "ERROR refcount block " + i + " is not cluster aligned; refcount table entry corrupted");
                res.corruptions++;
                rebuild = true;
                continue;
            }
            if (Long.compareUnsigned(cluster, counts.size()) >= 0) {
                res.corruptions++;
                boolean repairing = fix == Qcow2Check.RepairMode.ALL;
                img.log.message((repairing ? "Repairing" : "ERROR") + " refcount block " + i + " is outside image");
                if (repairing) {
                    String failure = growForRefblock(offset);
                    if (failure == null) {
                        res.corruptions--;
                        res.corruptionsFixed++;
                        incRefcounts(offset, img.clusterSize);
                    } else {
                        rebuild = true;
                        img.log.message("ERROR could not resize image: " + failure);
                    }
                }
                continue;
            }
            if (offset != 0) {
                incRefcounts(offset, img.clusterSize);
                long r = counts.get(cluster);
                if (r != 1) {
                    img.log.message("ERROR refcount block " + i + " refcount=" + Long.toUnsignedString(r));
                    res.corruptions++;
                    rebuild = true;
                }
            }
        }
    }

    /**
     * Grows the file so that a refcount block past its end lies inside it, as QEMU does; returns
     * the reason it could not, or null. Strata refuses to grow a file by more than its own size
     * plus a gigabyte (a hostile entry could point petabytes away); the refcount structure is then
     * rebuilt instead, which needs no growth.
     */
    private String growForRefblock(long offset) throws IOException {
        if (offset < 0 || offset > Long.MAX_VALUE - img.clusterSize) {
            return "Invalid argument";
        }
        long newLength = offset + img.clusterSize;
        if (newLength > 2 * img.fileLength() + (1L << 30)) {
            // reported as the file system reports a file grown past its limit
            img.log.error("Could not resize file: File too large");
            return "File too large";
        }
        try {
            img.growTo(newLength);
            img.sync();
            counts.ensureSize(img.sizeToClusters(img.fileLength()));
        } catch (Qcow2CheckRefcounts.BudgetExceeded e) {
            res.checkErrors++;
            throw new BlockException("Cannot allocate memory", Qcow2Check.ENOMEM);
        } catch (IOException e) {
            String why = Qcow2CheckResult.strerror(Qcow2Check.errno(e));
            img.log.error("Could not resize file: " + why);
            return why;
        }
        if (Long.compareUnsigned(offset >>> img.clusterBits, counts.size()) >= 0) {
            return "Invalid argument";
        }
        return null;
    }
}
