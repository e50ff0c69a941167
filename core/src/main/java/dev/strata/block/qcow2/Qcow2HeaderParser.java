package dev.strata.block.qcow2;

import static dev.strata.block.qcow2.Qcow2Header.COMPRESSION_DEFLATE;
import static dev.strata.block.qcow2.Qcow2Header.EXT_END;
import static dev.strata.block.qcow2.Qcow2Header.MAGIC;
import static dev.strata.block.qcow2.Qcow2Header.MAX_BACKING_FILE_NAME;
import static dev.strata.block.qcow2.Qcow2Header.MAX_CLUSTER_BITS;
import static dev.strata.block.qcow2.Qcow2Header.MIN_CLUSTER_BITS;
import static dev.strata.block.qcow2.Qcow2Header.V2_HEADER_LENGTH;
import static dev.strata.block.qcow2.Qcow2Header.V3_HEADER_LENGTH;

import dev.strata.block.BlockException;
import dev.strata.block.qcow2.Qcow2Header.HeaderExtension;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Decodes a {@link Qcow2Header} from the first cluster of an image.
 *
 * <p>The input is hostile: every length and offset read here is bounded by the bytes actually
 * present before it is used to index or allocate, and nothing is read past the first cluster.
 * Only what decoding needs is checked here (magic, version, cluster size, header length, extension
 * lengths, the backing file name), in QEMU's order and words; the other fields are checked against
 * the file by {@link Qcow2HeaderValidator}.
 */
final class Qcow2HeaderParser {
    private Qcow2HeaderParser() {}

    /** {@link Qcow2Header#parse(FileChannel)}: {@link #read} over positional channel reads. */
    static Qcow2Header parse(FileChannel channel) throws IOException {
        return read(
                (pos, dst) -> {
                    long p = pos;
                    int n;
                    while (dst.hasRemaining() && (n = channel.read(dst, p)) > 0) {
                        p += n;
                    }
                },
                channel.size());
    }

    /**
     * {@link Qcow2Header#read}: reads the fixed header first, then the whole header cluster once the
     * cluster size is known to be sane.
     */
    static Qcow2Header read(Qcow2Header.Source source, long fileSize) throws IOException {
        ByteBuffer fixed = ByteBuffer.allocate((int) Math.min(fileSize, V3_HEADER_LENGTH));
        source.read(0, fixed);
        fixed.flip();
        if (fixed.remaining() < V2_HEADER_LENGTH || fixed.getInt(0) != MAGIC) {
            throw new BlockException("Image is not in qcow2 format", BlockException.EINVAL);
        }
        int clusterBits = fixed.getInt(20);
        if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
            // parse reports a bad version before a bad cluster size, as QEMU does
            return parse(fixed);
        }
        ByteBuffer cluster = ByteBuffer.allocate((int) Math.min(fileSize, 1L << clusterBits));
        source.read(0, cluster);
        cluster.flip();
        return parse(cluster);
    }

    /** {@link Qcow2Header#parse(ByteBuffer)}. */
    static Qcow2Header parse(ByteBuffer buf) throws BlockException {
        ByteBuffer b = buf.slice().order(ByteOrder.BIG_ENDIAN);
        int avail = b.remaining();
        if (avail < V2_HEADER_LENGTH || b.getInt(0) != MAGIC) {
            throw new BlockException("Image is not in qcow2 format", BlockException.EINVAL);
        }
        int version = b.getInt(4);
        if (version < 2 || version > 3) {
            throw new BlockException(
                    "Unsupported qcow2 version " + Integer.toUnsignedString(version), BlockException.ENOTSUP);
        }
        long backingFileOffset = b.getLong(8);
        int backingFileSize = b.getInt(16);
        int clusterBits = b.getInt(20);
        checkClusterBits(clusterBits);
        int clusterSize = 1 << clusterBits;
        long size = b.getLong(24);
        int cryptMethod = b.getInt(32);
        int l1Size = b.getInt(36);
        long l1TableOffset = b.getLong(40);
        long refcountTableOffset = b.getLong(48);
        int refcountTableClusters = b.getInt(56);
        int nbSnapshots = b.getInt(60);
        long snapshotsOffset = b.getLong(64);

        long incompatible = 0;
        long compatible = 0;
        long autoclear = 0;
        int refcountOrder = 4;
        int headerLength = V2_HEADER_LENGTH;
        byte[] additional = new byte[0];
        int compressionType = COMPRESSION_DEFLATE;
        if (version == 3) {
            if (avail < V3_HEADER_LENGTH) {
                throw new BlockException("qcow2 header too short", BlockException.EINVAL);
            }
            incompatible = b.getLong(72);
            compatible = b.getLong(80);
            autoclear = b.getLong(88);
            refcountOrder = b.getInt(96);
            headerLength = b.getInt(100);
            if (headerLength < V3_HEADER_LENGTH) {
                throw new BlockException("qcow2 header too short", BlockException.EINVAL);
            }
            if (headerLength > clusterSize) {
                throw new BlockException("qcow2 header exceeds cluster size", BlockException.EINVAL);
            }
            if (headerLength > avail) {
                throw new BlockException("qcow2 header is truncated", BlockException.EINVAL);
            }
            additional = new byte[headerLength - V3_HEADER_LENGTH];
            b.get(V3_HEADER_LENGTH, additional);
            if (additional.length > 0) {
                compressionType = additional[0] & 0xff;
            }
        }

        // extensions run from the end of the header to the end marker, inside the first cluster
        // and before the backing file name
        long extEnd = Math.min(avail, clusterSize);
        if (backingFileOffset != 0 && backingFileOffset < extEnd) {
            extEnd = backingFileOffset;
        }
        List<HeaderExtension> extensions = new ArrayList<>();
        long pos = headerLength;
        while (pos + 8 <= extEnd) {
            int type = b.getInt((int) pos);
            long len = Integer.toUnsignedLong(b.getInt((int) pos + 4));
            if (type == EXT_END) {
                break;
            }
            if (len > extEnd - pos - 8) {
                throw new BlockException(
                        "Invalid qcow2 header extension 0x" + Integer.toHexString(type) + ": length " + len
                                + " runs past the end of the header area",
                        BlockException.EINVAL);
            }
            byte[] data = new byte[(int) len];
            b.get((int) pos + 8, data);
            extensions.add(new HeaderExtension(type, data));
            pos += 8 + ((len + 7) & ~7L);
        }

        String backingFile = null;
        if (backingFileOffset != 0) {
            if (Integer.toUnsignedLong(backingFileSize) > MAX_BACKING_FILE_NAME) {
                throw new BlockException("Backing file name too long", BlockException.EINVAL);
            }
            if (backingFileOffset < 0
                    || backingFileOffset > clusterSize - (long) backingFileSize
                    || backingFileOffset + backingFileSize > avail) {
                throw new BlockException("Invalid backing file offset", BlockException.EINVAL);
            }
            byte[] name = new byte[backingFileSize];
            b.get((int) backingFileOffset, name);
            backingFile = new String(name, StandardCharsets.UTF_8);
        }
        return new Qcow2Header(
                version,
                backingFileOffset,
                backingFileSize,
                clusterBits,
                size,
                cryptMethod,
                l1Size,
                l1TableOffset,
                refcountTableOffset,
                refcountTableClusters,
                nbSnapshots,
                snapshotsOffset,
                incompatible,
                compatible,
                autoclear,
                refcountOrder,
                headerLength,
                compressionType,
                additional,
                extensions,
                backingFile);
    }

    private static void checkClusterBits(int clusterBits) throws BlockException {
        if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
            throw new BlockException("Unsupported cluster size: 2^" + clusterBits, BlockException.EINVAL);
        }
    }
}
