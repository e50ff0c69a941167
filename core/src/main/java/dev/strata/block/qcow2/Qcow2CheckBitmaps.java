package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * The persistent bitmaps' structures with QEMU's rules: the bitmaps extension, the directory and
 * the tables, read and checked for the check (which counts the directory, each table and each
 * data cluster a table entry points to) and for the driver's open ({@link #readDirectory},
 * {@link #readTable}, then {@link Qcow2BitmapStore}).
 *
 * <p>QEMU 7.2 loads every bitmap when it opens the image, so a directory or a bitmap table that
 * breaks its rules makes the image fail to open, with QEMU's message; {@link #loadDirectory} does
 * the same for the check. A bitmap table is held whole only while it is read: the directory's
 * checks bound it to 1 Mi entries (8 MiB).
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
    private static final int TYPE_DIRTY_TRACKING = 1;

    /**
     * One bitmap directory entry: where its table is, how many entries it has, and its flags
     * ({@code inUse}: a program that had the image open may have changed the disk since the
     * bitmap was stored; {@code auto}: the bitmap records writes).
     */
    record Bitmap(String name, long tableOffset, long tableSize, int granularityBits, boolean inUse, boolean auto) {}

    private static final long FLAG_IN_USE = 1;
    private static final long FLAG_AUTO = 2;

    private Qcow2CheckBitmaps() {}

    /**
     * QEMU's warning on opening an image whose bitmaps extension lost its autoclear bit (a program
     * without bitmap support wrote the image), or any version 2 image with the extension.
     */
    static String staleWarning(int version) {
        return version < 3
                ? "This qcow2 v2 image contains bitmaps, but they may have been modified by a program without"
                        + " persistent bitmap support; so now they must all be considered inconsistent"
                : "a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent";
    }

    /** What QEMU prints after {@link #staleWarning}, without a line end. */
    static final String LEAK_HINT = "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix.";

    /**
     * Whether the image has a bitmaps extension QEMU ignores: in a version 2 image, or with its
     * autoclear bit cleared by a program without bitmap support.
     */
    static boolean staleExtension(Qcow2Header h) {
        return h.bitmaps().isPresent()
                && (h.version() < 3 || (h.autoclearFeatures() & Qcow2Header.AUTOCLEAR_BITMAPS) == 0);
    }

    /** QEMU's open-time warnings about the image's bitmaps, as {@link dev.strata.block.BlockDriver#openWarnings}. */
    static List<String> openWarnings(Qcow2Header h) {
        return staleExtension(h) ? List.of(staleWarning(h.version()) + "\n" + LEAK_HINT) : List.of();
    }

    /** Reads and checks the bitmap directory (QEMU's bitmap_list_load), failing as QEMU's open fails. */
    static List<Bitmap> loadDirectory(Qcow2CheckImage img) throws IOException {
        Qcow2Header.BitmapsExtension ext = img.bitmaps;
        if (ext == null) {
            return List.of();
        }
        String prefix = "Could not open '" + img.filename + "': ";
        checkDirectorySize(ext, prefix);
        byte[] dir = img.readBytes(ext.directoryOffset(), (int) ext.directorySize());
        List<Bitmap> out = parseDirectory(dir, ext.nbBitmaps(), img.clusterSize, img.virtualSize, prefix);
        loadBitmaps(img, out, prefix);
        return out;
    }

    /**
     * The bitmap directory as the driver's open reads it ({@link Qcow2BitmapStore} then reads the
     * tables and data): none in a version 2 image or when the bitmaps autoclear bit is clear (QEMU
     * then ignores the extension); the extension and the directory are checked as QEMU's open
     * checks them (its messages, without the "Could not open" the caller adds).
     */
    static List<Bitmap> readDirectory(ImageFile file, Qcow2Header h) throws IOException {
        Optional<Qcow2Header.BitmapsExtension> found = h.bitmaps();
        if (found.isEmpty() || staleExtension(h)) {
            return List.of();
        }
        Qcow2Header.BitmapsExtension ext = found.get();
        checkExtension(ext, h.clusterSize(), "");
        checkDirectorySize(ext, "");
        file.checkInside("bitmap directory", ext.directoryOffset(), ext.directorySize());
        byte[] dir = new byte[(int) ext.directorySize()];
        file.read(ext.directoryOffset(), dir, 0, dir.length);
        return parseDirectory(dir, ext.nbBitmaps(), h.clusterSize(), h.size(), "");
    }

    /** The bitmaps extension's fields, with QEMU's messages (the autoclear bit is the caller's). */
    static void checkExtension(Qcow2Header.BitmapsExtension ext, int clusterSize, String prefix) throws BlockException {
        if (ext.reserved() != 0) {
            throw new BlockException(prefix + "bitmaps_ext: Reserved field is not zero", BlockException.EINVAL);
        }
        if (Integer.toUnsignedLong(ext.nbBitmaps()) > Qcow2CheckImage.MAX_BITMAPS) {
            throw new BlockException(
                    prefix + "bitmaps_ext: Image has " + Integer.toUnsignedString(ext.nbBitmaps())
                            + " bitmaps, exceeding the QEMU supported maximum of " + Qcow2CheckImage.MAX_BITMAPS,
                    BlockException.EINVAL);
        }
        if (ext.nbBitmaps() == 0) {
            throw new BlockException(prefix + "found bitmaps extension with zero bitmaps", BlockException.EINVAL);
        }
        if ((ext.directoryOffset() & (clusterSize - 1)) != 0) {
            throw new BlockException(prefix + "bitmaps_ext: invalid bitmap directory offset", BlockException.EINVAL);
        }
        if (Long.compareUnsigned(ext.directorySize(), Qcow2CheckImage.MAX_BITMAP_DIRECTORY_SIZE) > 0) {
            throw new BlockException(
                    prefix + "bitmaps_ext: bitmap directory size (" + Long.toUnsignedString(ext.directorySize())
                            + ") exceeds the maximum supported size (" + Qcow2CheckImage.MAX_BITMAP_DIRECTORY_SIZE
                            + ")",
                    BlockException.EINVAL);
        }
    }

    private static void checkDirectorySize(Qcow2Header.BitmapsExtension ext, String prefix) throws BlockException {
        long size = ext.directorySize();
        if (size == 0) {
            throw new BlockException(prefix + "Requested bitmap directory size is zero", BlockException.EINVAL);
        }
        if (Long.compareUnsigned(size, Qcow2CheckImage.MAX_BITMAP_DIRECTORY_SIZE) > 0) {
            throw new BlockException(prefix + "Requested bitmap directory size is too big", BlockException.EINVAL);
        }
    }

    /** The directory's entries, each checked as QEMU's bitmap_list_load checks it. */
    private static List<Bitmap> parseDirectory(
            byte[] dir, int nbBitmaps, int clusterSize, long virtualSize, String prefix) throws BlockException {
        ByteBuffer b = ByteBuffer.wrap(dir);
        List<Bitmap> out = new ArrayList<>();
        long count = 0;
        int e = 0;
        String broken = prefix + "Broken bitmap directory";
        while (e < dir.length) {
            if (e + DIR_ENTRY_BYTES > dir.length) {
                throw new BlockException(broken, BlockException.EINVAL);
            }
            if (++count > Integer.toUnsignedLong(nbBitmaps)) {
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
            long entryBytes = entrySize(nameSize + extraSize);
            if (e + entryBytes > dir.length) {
                throw new BlockException(broken, BlockException.EINVAL);
            }
            if (extraSize != 0) {
                throw new BlockException(prefix + "Bitmap extra data is not supported", BlockException.EINVAL);
            }
            String name = new String(dir, e + DIR_ENTRY_BYTES, nameSize, StandardCharsets.UTF_8);
            long phys = tableSize * clusterSize;
            // the limit wraps at 64 bits exactly as QEMU's unsigned arithmetic does
            long coverable = (phys * 8) << granularityBits;
            boolean bad = tableSize == 0
                    || tableOffset == 0
                    || (tableOffset & (clusterSize - 1)) != 0
                    || tableSize > MAX_TABLE_ENTRIES
                    || granularityBits > MAX_GRANULARITY_BITS
                    || granularityBits < MIN_GRANULARITY_BITS
                    || (flags & RESERVED_FLAGS) != 0
                    || nameSize > MAX_NAME
                    || type != TYPE_DIRTY_TRACKING
                    || phys > MAX_PHYS_BYTES
                    || Long.compareUnsigned(virtualSize / 512 * 512, coverable) > 0;
            if (bad) {
                throw new BlockException(
                        prefix + "Bitmap '" + name + "' doesn't satisfy the constraints", BlockException.EINVAL);
            }
            out.add(new Bitmap(
                    name,
                    tableOffset,
                    tableSize,
                    granularityBits,
                    (flags & FLAG_IN_USE) != 0,
                    (flags & FLAG_AUTO) != 0));
            e += (int) entryBytes;
        }
        if (count != Integer.toUnsignedLong(nbBitmaps)) {
            throw new BlockException(
                    prefix + "Less bitmaps found than specified in header extension", BlockException.EINVAL);
        }
        return List.copyOf(out);
    }

    /** Bytes of a directory entry whose name (and extra data) take {@code variableBytes}: padded to 8. */
    static long entrySize(long variableBytes) {
        return (DIR_ENTRY_BYTES + variableBytes + 7) & ~7L;
    }

    /** A directory entry's size for a bitmap of this name, with no extra data (as Strata writes them). */
    static long entrySize(String name) {
        return entrySize(name.getBytes(StandardCharsets.UTF_8).length);
    }

    /** The directory's bytes, as {@link #parseDirectory} reads them: each entry's fixed part, its name, padding. */
    static byte[] encodeDirectory(List<Bitmap> entries) {
        int size = 0;
        for (Bitmap b : entries) {
            size += (int) entrySize(b.name());
        }
        ByteBuffer dir = ByteBuffer.allocate(size);
        for (Bitmap b : entries) {
            byte[] name = b.name().getBytes(StandardCharsets.UTF_8);
            int at = dir.position();
            dir.putLong(b.tableOffset())
                    .putInt((int) b.tableSize())
                    .putInt((int) ((b.inUse() ? FLAG_IN_USE : 0) | (b.auto() ? FLAG_AUTO : 0)))
                    .put((byte) TYPE_DIRTY_TRACKING)
                    .put((byte) b.granularityBits())
                    .putShort((short) name.length)
                    .putInt(0)
                    .put(name);
            dir.position(at + (int) entrySize(name.length));
        }
        return dir.array();
    }

    /**
     * The checks QEMU 7.2 makes when it loads every bitmap at open: valid table entries, a unique
     * name, and (unless the bitmap is marked in use, whose data QEMU skips) a table exactly as long
     * as the disk size and granularity require.
     */
    private static void loadBitmaps(Qcow2CheckImage img, List<Bitmap> bitmaps, String prefix) throws IOException {
        Set<String> names = new HashSet<>();
        for (Bitmap bm : bitmaps) {
            readTable(img::read, bm, img.clusterSize, prefix);
            if (!names.add(bm.name())) {
                throw new BlockException(prefix + "Bitmap already exists: " + bm.name(), BlockException.EINVAL);
            }
            if (!bm.inUse()
                    && bm.tableSize() != expectedTableSize(img.virtualSize, img.clusterSize, bm.granularityBits())) {
                throw new BlockException(
                        prefix + "Could not read bitmap '" + bm.name() + "' from image: Invalid argument",
                        BlockException.EINVAL);
            }
        }
    }

    /**
     * A bitmap's table, every entry checked as QEMU checks it when it loads the bitmap (its
     * message on a bad entry or a failed read). The directory's checks bound the table: at most
     * 512 MiB of data, so at most 1 Mi entries at the smallest cluster size.
     */
    static long[] readTable(Qcow2Header.Source file, Bitmap bm, int clusterSize, String prefix) throws IOException {
        long[] table = new long[(int) bm.tableSize()];
        ByteBuffer buf = ByteBuffer.allocate((int) Math.min(clusterSize, bm.tableSize() * 8));
        for (int i = 0; i < table.length; ) {
            int n = Math.min(buf.capacity() / 8, table.length - i);
            buf.clear().limit(n * 8);
            try {
                file.read(bm.tableOffset() + i * 8L, buf);
            } catch (IOException e) {
                throw new BlockException(
                        prefix + "Could not read bitmap_table table from image for bitmap '" + bm.name() + "': "
                                + Qcow2CheckResult.strerror(Qcow2Check.errno(e)),
                        Qcow2Check.errno(e));
            }
            for (int j = 0; j < n; j++) {
                long entry = buf.getLong(j * 8);
                if (!validEntry(entry, clusterSize)) {
                    throw new BlockException(
                            prefix + "Could not read bitmap_table table from image for bitmap '" + bm.name()
                                    + "': Invalid argument",
                            BlockException.EINVAL);
                }
                table[i + j] = entry;
            }
            i += n;
        }
        return table;
    }

    /**
     * Clusters of bitmap data a disk of {@code virtualSize} bytes needs at this granularity
     * (QEMU's serialization size: whole 64-bit words of bits).
     */
    static long expectedTableSize(long virtualSize, int clusterSize, int granularityBits) {
        long bytes = virtualSize / 512 * 512;
        if (bytes == 0) {
            return 0;
        }
        long words = (((bytes - 1) >>> granularityBits) >>> 6) + 1;
        return (words * 8 + clusterSize - 1) / clusterSize;
    }

    private static boolean validEntry(long entry, int clusterSize) {
        long offset = entry & ENTRY_OFFSET_MASK;
        return (entry & ENTRY_RESERVED_MASK) == 0
                && (offset == 0 || ((entry & ENTRY_ALL_ONES) == 0 && (offset & (clusterSize - 1)) == 0));
    }

    /**
     * Counts the directory, the tables and the data clusters as used (QEMU's
     * qcow2_check_bitmaps_refcounts).
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
                    if (!validEntry(entry, img.clusterSize)) {
                        // the open already refused such tables; kept for a table changed since
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
