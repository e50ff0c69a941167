package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The internal snapshot table as {@code qemu-img check} reads it: QEMU skips the table when it
 * opens an image for checking and reads it here instead, so that a broken table is reported (or,
 * with {@code -r all}, cut back) rather than refusing the image.
 *
 * <p>Bounds: at most {@link #MAX_SNAPSHOTS} entries and {@link #MAX_TABLE_BYTES} of table, and each
 * entry's extra data at most {@link #MAX_EXTRA_DATA} bytes, as QEMU enforces. Only the fields the
 * check needs are kept (names are cut to {@link #MAX_KEPT_NAME} bytes, they only appear in
 * messages), so a hostile table costs little memory.
 */
final class Qcow2CheckSnapshots {
    static final int MAX_SNAPSHOTS = 65536;
    static final long MAX_TABLE_BYTES = 1024L * MAX_SNAPSHOTS;
    static final int MAX_EXTRA_DATA = 1024;
    static final int HEADER_BYTES = 40;
    static final int KNOWN_EXTRA_BYTES = 24;
    static final long MAX_L1_ENTRIES = Qcow2Header.MAX_L1_BYTES / 8;
    private static final int MAX_KEPT_NAME = 1024;

    /** One snapshot's L1 table and names. */
    record Snapshot(String id, String name, long l1TableOffset, long l1Size, long extraDataSize) {}

    /** The table as read: its entries, where it lies and how long it is. */
    record Table(List<Snapshot> snapshots, long offset, long size) {
        static final Table EMPTY = new Table(List.of(), 0, 0);
    }

    private Qcow2CheckSnapshots() {}

    /**
     * Reads the snapshot table (QEMU's qcow2_check_read_snapshot_table). Counts corruptions in
     * {@code res}; throws (after counting a check error) when the table cannot be read, which ends
     * the check as QEMU's does.
     */
    static Table read(Qcow2CheckImage img, Qcow2CheckTally res, Qcow2Check.RepairMode fix) throws IOException {
        boolean repair = fix == Qcow2Check.RepairMode.ALL;
        long nb = Integer.toUnsignedLong(img.header.nbSnapshots());
        long offset = img.header.snapshotsOffset();
        long reduced = 0;
        if (nb > MAX_SNAPSHOTS && repair) {
            img.log.message("Discarding " + (nb - MAX_SNAPSHOTS) + " overhanging snapshots");
            reduced += nb - MAX_SNAPSHOTS;
            nb = MAX_SNAPSHOTS;
        }
        String invalid = null;
        int errno = 0;
        if (nb > MAX_SNAPSHOTS) {
            invalid = "snapshot table too large";
            errno = BlockException.EFBIG;
        } else if (offset < 0 || Long.MAX_VALUE - nb * HEADER_BYTES < offset || (offset & (img.clusterSize - 1)) != 0) {
            invalid = "snapshot table offset invalid";
            errno = BlockException.EINVAL;
        }
        if (invalid != null) {
            res.checkErrors++;
            img.log.error("ERROR " + invalid);
            if (nb > MAX_SNAPSHOTS) {
                img.log.message("You can force-remove all " + (nb - MAX_SNAPSHOTS)
                        + " overhanging snapshots with qemu-img check -r all");
            }
            throw new BlockException(invalid, errno);
        }

        List<Snapshot> list = new ArrayList<>();
        long pos = offset;
        long tableLength = 0;
        long dropped = 0;
        ByteBuffer h = ByteBuffer.allocate(HEADER_BYTES);
        for (long i = 0; i < nb; i++) {
            long before = pos;
            tableLength = roundUp8(tableLength);
            pos = roundUp8(pos);
            h.clear();
            img.read(pos, h);
            pos += HEADER_BYTES;
            long l1Offset = h.getLong(0);
            long l1Size = Integer.toUnsignedLong(h.getInt(8));
            int idSize = Short.toUnsignedInt(h.getShort(12));
            int nameSize = Short.toUnsignedInt(h.getShort(14));
            long extra = Integer.toUnsignedLong(h.getInt(36));
            boolean truncate = false;
            if (extra > MAX_EXTRA_DATA) {
                if (!repair) {
                    fail(
                            img,
                            res,
                            "Too much extra metadata in snapshot table entry " + i,
                            "You can force-remove this extra metadata with qemu-img check -r all");
                }
                img.log.message("Discarding too much extra metadata in snapshot table entry " + i + " (" + extra + " > "
                        + MAX_EXTRA_DATA + ")");
                dropped++;
                truncate = true;
            }
            pos += Math.min(KNOWN_EXTRA_BYTES, extra);
            if (extra > KNOWN_EXTRA_BYTES) {
                long extraEnd = pos + extra - KNOWN_EXTRA_BYTES;
                if (truncate) {
                    extra = MAX_EXTRA_DATA;
                }
                pos = extraEnd;
            }
            String id = readName(img, pos, idSize);
            pos += idSize;
            String name = readName(img, pos, nameSize);
            pos += nameSize;
            tableLength += HEADER_BYTES + extra + idSize + nameSize;
            if (tableLength > MAX_TABLE_BYTES || pos - offset > Integer.MAX_VALUE) {
                if (!repair) {
                    fail(
                            img,
                            res,
                            "Snapshot table is too big",
                            "You can force-remove all " + (nb - i)
                                    + " overhanging snapshots with qemu-img check -r all");
                }
                img.log.message("Discarding " + (nb - i) + " overhanging snapshots (snapshot table is too big)");
                reduced += nb - i;
                pos = before;
                break;
            }
            list.add(new Snapshot(id, name, l1Offset, l1Size, extra));
        }
        res.corruptions += reduced + dropped;
        if (reduced > 0) {
            // the header must match the table before the refcount check relies on it; this leaks
            // the cut entries' clusters, which the refcount repair then frees
            try {
                byte[] count = ByteBuffer.allocate(4).putInt(list.size()).array();
                img.write(60, count, 0, 4);
                img.sync();
            } catch (IOException e) {
                res.checkErrors++;
                img.log.message("ERROR failed to update the snapshot count in the image header: "
                        + Qcow2CheckResult.strerror(Qcow2Check.errno(e)));
                throw e;
            }
            res.corruptionsFixed += reduced;
            res.corruptions -= reduced;
        }
        if (img.version >= 3) {
            for (int i = 0; i < list.size(); i++) {
                if (list.get(i).extraDataSize() < 16) {
                    res.corruptions++;
                    // Strata cannot rewrite the snapshot table, so it reports rather than repairs
                    img.log.message("ERROR snapshot table entry " + i + " is incomplete");
                }
            }
        }
        return new Table(List.copyOf(list), offset, pos - offset);
    }

    private static void fail(Qcow2CheckImage img, Qcow2CheckTally res, String why, String hint) throws BlockException {
        res.checkErrors++;
        img.log.error("ERROR failed to read the snapshot table: " + why);
        img.log.message(hint);
        throw new BlockException(why, BlockException.EFBIG);
    }

    private static String readName(Qcow2CheckImage img, long pos, int size) throws IOException {
        byte[] b = img.readBytes(pos, Math.min(size, MAX_KEPT_NAME));
        int len = 0;
        while (len < b.length && b[len] != 0) {
            len++;
        }
        return new String(b, 0, len, StandardCharsets.UTF_8);
    }

    private static long roundUp8(long v) {
        return (v + 7) & ~7L;
    }
}
