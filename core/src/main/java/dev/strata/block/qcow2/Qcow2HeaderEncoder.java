package dev.strata.block.qcow2;

import static dev.strata.block.qcow2.Qcow2Header.MAGIC;
import static dev.strata.block.qcow2.Qcow2Header.MAX_BACKING_FILE_NAME;
import static dev.strata.block.qcow2.Qcow2Header.V3_HEADER_LENGTH;

import dev.strata.block.BlockException;
import dev.strata.block.qcow2.Qcow2Header.HeaderExtension;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * Writes a {@link Qcow2Header} back to its on-disk bytes.
 *
 * <p>Every extension and every additional header field the header was parsed with is written
 * again, unknown ones included, so rewriting the header never loses data of a feature Strata does
 * not know. The header's equality is defined by these bytes.
 */
final class Qcow2HeaderEncoder {
    private Qcow2HeaderEncoder() {}

    /** {@link Qcow2Header#encode}. */
    static byte[] encode(Qcow2Header h) throws BlockException {
        int cs = h.clusterSize();
        int extBytes = 0;
        for (HeaderExtension e : h.extensions()) {
            extBytes += 8 + ((e.length() + 7) & ~7);
        }
        byte[] name = h.backingFile() == null ? new byte[0] : h.backingFile().getBytes(StandardCharsets.UTF_8);
        if (name.length > MAX_BACKING_FILE_NAME) {
            throw new BlockException("Backing file name too long", BlockException.EINVAL);
        }
        long total = (long) h.headerLength() + extBytes + 8 + name.length;
        if (total > cs) {
            throw new BlockException(
                    "Header extensions and backing file name do not fit in one cluster", BlockException.ENOSPC);
        }
        ByteBuffer b = ByteBuffer.allocate((int) total).order(ByteOrder.BIG_ENDIAN);
        long backingOffset = h.backingFile() == null ? 0 : (long) h.headerLength() + extBytes + 8;
        b.putInt(0, MAGIC);
        b.putInt(4, h.version());
        b.putLong(8, backingOffset);
        b.putInt(16, h.backingFile() == null ? 0 : name.length);
        b.putInt(20, h.clusterBits());
        b.putLong(24, h.size());
        b.putInt(32, h.cryptMethod());
        b.putInt(36, h.l1Size());
        b.putLong(40, h.l1TableOffset());
        b.putLong(48, h.refcountTableOffset());
        b.putInt(56, h.refcountTableClusters());
        b.putInt(60, h.nbSnapshots());
        b.putLong(64, h.snapshotsOffset());
        if (h.version() >= 3) {
            b.putLong(72, h.incompatibleFeatures());
            b.putLong(80, h.compatibleFeatures());
            b.putLong(88, h.autoclearFeatures());
            b.putInt(96, h.refcountOrder());
            b.putInt(100, h.headerLength());
            byte[] additionalFields = h.additionalFields();
            b.put(V3_HEADER_LENGTH, additionalFields);
            if (additionalFields.length > 0) {
                b.put(V3_HEADER_LENGTH, (byte) h.compressionType());
            }
        }
        int pos = h.headerLength();
        for (HeaderExtension e : h.extensions()) {
            b.putInt(pos, e.type());
            b.putInt(pos + 4, e.length());
            b.put(pos + 8, e.data());
            pos += 8 + ((e.length() + 7) & ~7);
        }
        // end marker: 8 zero bytes already there
        pos += 8;
        b.put(pos, name);
        return b.array();
    }
}
