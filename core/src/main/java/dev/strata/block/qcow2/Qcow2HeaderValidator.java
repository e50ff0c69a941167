package dev.strata.block.qcow2;

import static dev.strata.block.qcow2.Qcow2Header.COMPRESSION_DEFLATE;
import static dev.strata.block.qcow2.Qcow2Header.COMPRESSION_ZSTD;
import static dev.strata.block.qcow2.Qcow2Header.EXT_BACKING_FORMAT;
import static dev.strata.block.qcow2.Qcow2Header.EXT_BITMAPS;
import static dev.strata.block.qcow2.Qcow2Header.INCOMPAT_COMPRESSION;
import static dev.strata.block.qcow2.Qcow2Header.MAX_L1_BYTES;
import static dev.strata.block.qcow2.Qcow2Header.MAX_REFTABLE_BYTES;
import static dev.strata.block.qcow2.Qcow2Header.MAX_SNAPSHOTS;
import static dev.strata.block.qcow2.Qcow2Header.V3_HEADER_LENGTH;

import dev.strata.block.BlockException;
import dev.strata.block.qcow2.Qcow2Header.FeatureName;
import dev.strata.block.qcow2.Qcow2Header.HeaderExtension;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Checks a parsed {@link Qcow2Header} against QEMU's limits and the size of its file, and words
 * the refusal of incompatible feature bits.
 *
 * <p>The order of the checks decides which message an image broken in several ways is refused
 * with; the hostile-image tests pin it, so reordering them is a change of behaviour.
 */
final class Qcow2HeaderValidator {
    private Qcow2HeaderValidator() {}

    /** {@link Qcow2Header#validate}. */
    static void validate(Qcow2Header h, long fileSize) throws BlockException {
        int cs = h.clusterSize();
        if (h.refcountOrder() < 0 || h.refcountOrder() > 6) {
            throw new BlockException(
                    "Reference count entry width too large; may not exceed 64 bits", BlockException.EINVAL);
        }
        if (h.size() < 0) {
            throw new BlockException("Image is too big", BlockException.EFBIG);
        }
        if (h.version() == 3 && (h.headerLength() & 7) != 0) {
            throw new BlockException(
                    "qcow2 header length " + h.headerLength() + " is not a multiple of 8", BlockException.EINVAL);
        }
        if ((h.incompatibleFeatures() & INCOMPAT_COMPRESSION) != 0) {
            if (h.headerLength() <= V3_HEADER_LENGTH) {
                throw new BlockException("qcow2 header too short to hold the compression type", BlockException.EINVAL);
            }
            if (h.compressionType() == COMPRESSION_DEFLATE) {
                throw new BlockException(
                        "Invalid compression type: the compression type bit is set but the type is zlib",
                        BlockException.EINVAL);
            }
        } else if (h.compressionType() != COMPRESSION_DEFLATE) {
            throw new BlockException(
                    "compression_type is set but the compression type bit is not set", BlockException.EINVAL);
        }
        if (h.compressionType() > COMPRESSION_ZSTD) {
            throw new BlockException("Unknown compression type " + h.compressionType(), BlockException.ENOTSUP);
        }
        if (h.hasExtendedL2() && h.clusterBits() < 14) {
            throw new BlockException("Extended L2 entries need clusters of at least 16 KiB", BlockException.EINVAL);
        }

        // refcount table
        long reftableBytes = Integer.toUnsignedLong(h.refcountTableClusters()) * cs;
        if (h.refcountTableClusters() == 0) {
            throw new BlockException("Image does not contain a reference count table", BlockException.EINVAL);
        }
        if (reftableBytes > MAX_REFTABLE_BYTES) {
            throw new BlockException("Reference count table too large", BlockException.EINVAL);
        }
        checkTable(h, "Reference count table", h.refcountTableOffset(), reftableBytes, fileSize);

        // L1 table
        long l1 = Integer.toUnsignedLong(h.l1Size());
        if (l1 * 8 > MAX_L1_BYTES) {
            throw new BlockException("Active L1 table too large", BlockException.EFBIG);
        }
        long needed = Qcow2Header.requiredL1Entries(h.size(), h.clusterBits(), h.l2Entries());
        if (needed > MAX_L1_BYTES / 8) {
            throw new BlockException("Image is too big", BlockException.EFBIG);
        }
        if (l1 < needed) {
            throw new BlockException("L1 table is too small", BlockException.EINVAL);
        }
        if (l1 > 0) {
            checkTable(h, "L1 table", h.l1TableOffset(), l1 * 8, fileSize);
        }

        // snapshots are not read, but their table must still be sane
        if (Integer.toUnsignedLong(h.nbSnapshots()) > MAX_SNAPSHOTS) {
            throw new BlockException("Too many snapshots", BlockException.EINVAL);
        }
        if (h.nbSnapshots() != 0
                && (h.snapshotsOffset() % cs != 0 || h.snapshotsOffset() <= 0 || h.snapshotsOffset() >= fileSize)) {
            throw new BlockException("Snapshot table offset invalid", BlockException.EINVAL);
        }

        for (HeaderExtension e : h.extensions()) {
            switch (e.type()) {
                case EXT_BACKING_FORMAT -> {
                    if (e.length() > 1023) {
                        throw new BlockException(
                                "ERROR: ext_backing_format: len=" + e.length() + " too large", BlockException.EINVAL);
                    }
                }
                case EXT_BITMAPS -> {
                    if (e.length() != 24) {
                        throw new BlockException("bitmaps_ext: Invalid extension length", BlockException.EINVAL);
                    }
                }
                default -> {
                    // other extensions are kept as they are
                }
            }
        }
    }

    private static void checkTable(Qcow2Header h, String what, long offset, long bytes, long fileSize)
            throws BlockException {
        if (offset <= 0 || offset % h.clusterSize() != 0) {
            throw new BlockException(
                    "Invalid " + what.toLowerCase(java.util.Locale.ROOT).replace("l1", "L1") + " offset",
                    BlockException.EINVAL);
        }
        if (offset > fileSize || bytes > fileSize - offset) {
            throw new BlockException(
                    what + " at offset " + offset + " (" + bytes + " bytes) lies outside the image file",
                    BlockException.EINVAL);
        }
    }

    /** {@link Qcow2Header#unsupportedFeatures}. */
    static Optional<String> unsupportedFeatures(Qcow2Header h, long supported) {
        long unsupported = h.incompatibleFeatures() & ~supported;
        if (unsupported == 0) {
            return Optional.empty();
        }
        List<String> names = new ArrayList<>();
        for (FeatureName f : h.featureNames()) {
            if (f.kind() == 0 && f.bit() < 64 && (unsupported & (1L << f.bit())) != 0) {
                names.add(f.name());
                unsupported &= ~(1L << f.bit());
            }
        }
        if (unsupported != 0) {
            names.add("Unknown incompatible feature: " + Long.toHexString(unsupported));
        }
        return Optional.of("Unsupported qcow2 feature(s): " + String.join(", ", names));
    }
}
