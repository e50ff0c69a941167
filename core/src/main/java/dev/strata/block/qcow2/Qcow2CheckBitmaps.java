package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The persistent bitmaps' clusters as the check counts them: the bitmap directory, each bitmap
 * table and each data cluster a table entry points to.
 *
 * <p>QEMU loads the bitmap directory when it opens the image, so a directory that breaks its rules
 * makes the image fail to open, with QEMU's message; {@link #loadDirectory} does the same. Bitmap
 * tables are read in one-cluster pieces and never held whole.
 */
final class Qcow2CheckBitmaps {
    static final long MAX_TABLE_ENTRIES = 0x800_0000L;
    static final long MAX_PHYS_BYTES = 0x2000_0000L;
    static final int MIN_GRANULARITY_BITS = 9;
    static final int MAX_GRANULARITY_BITS = 31;
    static final int MAX_NAME = 1023;
    static final long RESERVED_FLAGS = 0xffff_fffcL;
    static final long ENTRY_RESERVED_MASK = 0xff00_0000_0000_01feL;
    static final long ENTRY_OFFSET_MASK = 0x00ff_ffff_ffff_fe00L;
    static final long ENTRY_ALL_ONES = 1L;
    private static final int DIR_ENTRY_BYTES = 24;

    /** One bitmap directory entry: where its table is and how many entries it has. */
    record Bitmap(String name, long tableOffset, long tableSize) {}

    private Qcow2CheckBitmaps() {}

    /** Reads and checks the bitmap directory (QEMU's bitmap_list_load), failing as QEMU's open fails. */
    static List<Bitmap> loadDirectory(Qcow2CheckImage img) throws IOException {
        Qcow2Header.BitmapsExtension ext = img.bitmaps;
        if (ext == null) {
            return List.of();
        }
        String prefix = "Could not open '" + img.filename + "': ";
        long size = ext.directorySize();
        if (size == 0) {
            throw new BlockException(prefix + "Requested bitmap directory size is zero", BlockException.EINVAL);
        }
        if (Long.compareUnsigned(size, Qcow2CheckImage.MAX_BITMAP_DIRECTORY_SIZE) > 0) {
            throw new BlockException(prefix + "Requested bitmap directory size is too big", BlockException.EINVAL);
        }
        byte[] dir = img.readBytes(ext.directoryOffset(), (int) size);
        ByteBuffer b = ByteBuffer.wrap(dir);
        List<Bitmap> out = new ArrayList<>();
        long count = 0;
        int e = 0;
        String broken = prefix + "Broken bitmap directory";
        while (e < dir.length) {
            if (e + DIR_ENTRY_BYTES > dir.length) {
                throw new BlockException(broken, BlockException.EINVAL);
            }
            if (++count > Integer.toUnsignedLong(ext.nbBitmaps())) {
                throw new BlockException(
                        prefix + "More bitmaps found than specified in header extension", BlockException.EINVAL);
            }
            long tableOffset = b.getLong(e);
            long tableSize = Integer.toUnsignedLong(b.getInt(e + 8));
            long flags = Integer.toUnsignedLong(b.getInt(e + 12));
            int type = b.get(e + 16) & 0xff;
            int granularityBits = b.get(e + 17) & 0xff;
            int nameSize = Short.toUnsignedInt(b.getShort(e + 18));
            long extraSize = Integer.toUnsignedLong(b.getInt(e + 20));
            long entryBytes = (DIR_ENTRY_BYTES + nameSize + extraSize + 7) & ~7L;
            if (e + entryBytes > dir.length) {
                throw new BlockException(broken, BlockException.EINVAL);
            }
            if (extraSize != 0) {
                throw new BlockException(prefix + "Bitmap extra data is not supported", BlockException.EINVAL);
            }
            String name = new String(dir, e + DIR_ENTRY_BYTES, nameSize, StandardCharsets.UTF_8);
            long phys = tableSize * img.clusterSize;
            // the limit wraps at 64 bits exactly as QEMU's unsigned arithmetic does
            long coverable = (phys * 8) << granularityBits;
            boolean bad = tableSize == 0
                    || tableOffset == 0
                    || (tableOffset & (img.clusterSize - 1)) != 0
                    || tableSize > MAX_TABLE_ENTRIES
                    || granularityBits > MAX_GRANULARITY_BITS
                    || granularityBits < MIN_GRANULARITY_BITS
                    || (flags & RESERVED_FLAGS) != 0
                    || nameSize > MAX_NAME
                    || type != 1
                    || phys > MAX_PHYS_BYTES
                    || Long.compareUnsigned(img.virtualSize / 512 * 512, coverable) > 0;
            if (bad) {
                throw new BlockException(
                        prefix + "Bitmap '" + name + "' doesn't satisfy the constraints", BlockException.EINVAL);
            }
            out.add(new Bitmap(name, tableOffset, tableSize));
            e += (int) entryBytes;
        }
        if (count != Integer.toUnsignedLong(ext.nbBitmaps())) {
            throw new BlockException(
                    prefix + "Less bitmaps found than specified in header extension", BlockException.EINVAL);
        }
        return List.copyOf(out);
    }

    /**
     * Counts the directory, the tables and the data clusters as used (QEMU's
     * qcow2_check_bitmaps_refcounts). An invalid table entry is a corruption; unlike QEMU 7.2,
     * which then stops the whole check, the other entries are still counted.
     */
    static void count(Qcow2CheckImage img, Qcow2CheckWalk walk, List<Bitmap> bitmaps) throws IOException {
        Qcow2Header.BitmapsExtension ext = img.bitmaps;
        if (ext == null) {
            return;
        }
        walk.incRefcounts(ext.directoryOffset(), ext.directorySize());
        ByteBuffer buf = ByteBuffer.allocate(img.clusterSize);
        for (Bitmap bm : bitmaps) {
            walk.incRefcounts(bm.tableOffset(), bm.tableSize() * 8);
            for (long i = 0; i < bm.tableSize(); ) {
                int n = (int) Math.min(buf.capacity() / 8, bm.tableSize() - i);
                buf.clear().limit(n * 8);
                img.read(bm.tableOffset() + i * 8, buf);
                for (int j = 0; j < n; j++) {
                    long entry = buf.getLong(j * 8);
                    long offset = entry & ENTRY_OFFSET_MASK;
                    boolean bad = (entry & ENTRY_RESERVED_MASK) != 0
                            || (offset != 0
                                    && ((entry & ENTRY_ALL_ONES) != 0 || (offset & (img.clusterSize - 1)) != 0));
                    if (bad) {
                        walk.tally().corruptions++;
                        img.log.message("ERROR bitmap '" + bm.name() + "' table entry " + (i + j) + " is invalid: 0x"
                                + Long.toHexString(entry));
                        continue;
                    }
                    if (offset != 0) {
                        walk.incRefcounts(offset, img.clusterSize);
                    }
                }
                i += n;
            }
        }
    }
}
