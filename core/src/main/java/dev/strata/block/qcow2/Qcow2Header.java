package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;

/**
 * The qcow2 image header as stored in the first cluster: the fixed fields, the v3 additional
 * fields, the header extensions (kept in their on-disk order, unknown ones as opaque bytes) and the
 * backing file name.
 *
 * <p>{@link #parse} only decodes and bounds what it needs to find the extensions; {@link #validate}
 * checks every field against the file and QEMU's limits, in QEMU's words, so that callers (the
 * driver, {@code check}) never trust a size read from disk. {@link #encode} writes the whole
 * header cluster back with every extension it was parsed with, so rewriting the header never loses
 * data of a feature Strata does not know. The three live in {@code Qcow2HeaderParser}, {@code
 * Qcow2HeaderValidator} and {@code Qcow2HeaderEncoder}; this record is the value and its copies.
 *
 * @param version 2 or 3
 * @param backingFileOffset where the backing file name is stored, 0 without backing file
 * @param backingFileSize length of the backing file name in bytes
 * @param clusterBits log2 of the cluster size
 * @param size virtual disk size in bytes
 * @param cryptMethod 0 none, 1 AES, 2 LUKS
 * @param l1Size entries in the active L1 table
 * @param l1TableOffset host offset of the active L1 table
 * @param refcountTableOffset host offset of the refcount table
 * @param refcountTableClusters clusters the refcount table occupies
 * @param nbSnapshots number of internal snapshots
 * @param snapshotsOffset host offset of the snapshot table
 * @param incompatibleFeatures incompatible feature bits (0 for v2)
 * @param compatibleFeatures compatible feature bits (0 for v2)
 * @param autoclearFeatures auto-clear feature bits (0 for v2)
 * @param refcountOrder log2 of the refcount width in bits (4 for v2)
 * @param headerLength length of the fixed header (72 for v2)
 * @param compressionType 0 deflate, 1 zstd (byte 104; 0 when absent)
 * @param additionalFields the raw bytes from offset 104 to {@code headerLength} (v3), kept so that
 *     fields Strata does not know survive a rewrite; byte 0 is the compression type
 * @param extensions header extensions in on-disk order, without the end marker
 * @param backingFile backing file name, or null without one
 */
public record Qcow2Header(
        int version,
        long backingFileOffset,
        int backingFileSize,
        int clusterBits,
        long size,
        int cryptMethod,
        int l1Size,
        long l1TableOffset,
        long refcountTableOffset,
        int refcountTableClusters,
        int nbSnapshots,
        long snapshotsOffset,
        long incompatibleFeatures,
        long compatibleFeatures,
        long autoclearFeatures,
        int refcountOrder,
        int headerLength,
        int compressionType,
        byte[] additionalFields,
        List<HeaderExtension> extensions,
        String backingFile) {

    public static final int MAGIC = 0x514649fb;
    public static final int V2_HEADER_LENGTH = 72;
    public static final int V3_HEADER_LENGTH = 104;
    /** The header length qemu-img writes for v3 images: 104 plus the compression type, padded to 8. */
    public static final int V3_DEFAULT_HEADER_LENGTH = 112;

    public static final int MIN_CLUSTER_BITS = 9;
    public static final int MAX_CLUSTER_BITS = 21;
    public static final int MAX_BACKING_FILE_NAME = 1023;
    /** QEMU's limit on the active L1 table. */
    public static final long MAX_L1_BYTES = 32L << 20;
    /** QEMU's limit on the refcount table. */
    public static final long MAX_REFTABLE_BYTES = 8L << 20;

    public static final int MAX_SNAPSHOTS = 65536;

    public static final int EXT_END = 0;
    public static final int EXT_BACKING_FORMAT = 0xe2792aca;
    public static final int EXT_FEATURE_TABLE = 0x6803f857;
    public static final int EXT_BITMAPS = 0x23852875;
    public static final int EXT_CRYPTO = 0x0537be77;
    public static final int EXT_DATA_FILE = 0x44415441;

    public static final long INCOMPAT_DIRTY = 1L;
    public static final long INCOMPAT_CORRUPT = 1L << 1;
    public static final long INCOMPAT_DATA_FILE = 1L << 2;
    public static final long INCOMPAT_COMPRESSION = 1L << 3;
    public static final long INCOMPAT_EXTL2 = 1L << 4;
    /** Every incompatible bit the format defines today. */
    public static final long INCOMPAT_KNOWN =
            INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

    public static final long COMPAT_LAZY_REFCOUNTS = 1L;
    public static final long AUTOCLEAR_BITMAPS = 1L;
    public static final long AUTOCLEAR_DATA_FILE_RAW = 1L << 1;

    public static final int COMPRESSION_DEFLATE = 0;
    public static final int COMPRESSION_ZSTD = 1;

    /** One header extension: its type and its data without padding. */
    public record HeaderExtension(int type, byte[] data) {
        public HeaderExtension {
            data = data.clone();
        }

        @Override
        public byte[] data() {
            return data.clone();
        }

        public int length() {
            return data.length;
        }

        /** The extension's data read as a big-endian buffer (read-only). */
        public ByteBuffer buffer() {
            return ByteBuffer.wrap(data).asReadOnlyBuffer();
        }
    }

    /** One entry of the feature name table: kind 0 incompatible, 1 compatible, 2 autoclear. */
    public record FeatureName(int kind, int bit, String name) {}

    /** The bitmaps extension's fields. */
    public record BitmapsExtension(int nbBitmaps, int reserved, long directorySize, long directoryOffset) {}

    public Qcow2Header {
        additionalFields = additionalFields.clone();
        extensions = List.copyOf(extensions);
    }

    @Override
    public byte[] additionalFields() {
        return additionalFields.clone();
    }

    public int clusterSize() {
        return 1 << clusterBits;
    }

    public int refcountBits() {
        return 1 << refcountOrder;
    }

    /** L2 entries per table (8 bytes each; 16 with extended L2 entries). */
    public int l2Entries() {
        return clusterSize() / (hasExtendedL2() ? 16 : 8);
    }

    public boolean isDirty() {
        return (incompatibleFeatures & INCOMPAT_DIRTY) != 0;
    }

    public boolean isCorrupt() {
        return (incompatibleFeatures & INCOMPAT_CORRUPT) != 0;
    }

    public boolean hasExternalDataFile() {
        return (incompatibleFeatures & INCOMPAT_DATA_FILE) != 0;
    }

    public boolean hasExtendedL2() {
        return (incompatibleFeatures & INCOMPAT_EXTL2) != 0;
    }

    public boolean lazyRefcounts() {
        return (compatibleFeatures & COMPAT_LAZY_REFCOUNTS) != 0;
    }

    /** The compression type's QEMU name: "zlib" (deflate) or "zstd". */
    public String compressionTypeName() {
        return compressionType == COMPRESSION_ZSTD ? "zstd" : "zlib";
    }

    public Optional<HeaderExtension> extension(int type) {
        return extensions.stream().filter(e -> e.type() == type).findFirst();
    }

    /** The backing file format from its header extension, if present. */
    public Optional<String> backingFormat() {
        return extension(EXT_BACKING_FORMAT).map(e -> new String(e.data, StandardCharsets.UTF_8));
    }

    /** The external data file name from its header extension, if present. */
    public Optional<String> dataFile() {
        return extension(EXT_DATA_FILE).map(e -> new String(e.data, StandardCharsets.UTF_8));
    }

    /** The feature name table's entries, empty when the extension is absent. */
    public List<FeatureName> featureNames() {
        Optional<HeaderExtension> ext = extension(EXT_FEATURE_TABLE);
        if (ext.isEmpty()) {
            return List.of();
        }
        byte[] d = ext.get().data;
        List<FeatureName> out = new ArrayList<>();
        for (int p = 0; p + 48 <= d.length; p += 48) {
            int len = 0;
            while (len < 46 && d[p + 2 + len] != 0) {
                len++;
            }
            out.add(new FeatureName(d[p] & 0xff, d[p + 1] & 0xff, new String(d, p + 2, len, StandardCharsets.UTF_8)));
        }
        return out;
    }

    /** The bitmaps extension's fields, if present and at least 24 bytes long. */
    public Optional<BitmapsExtension> bitmaps() {
        return extension(EXT_BITMAPS).filter(e -> e.data.length >= 24).map(e -> {
            ByteBuffer b = ByteBuffer.wrap(e.data);
            return new BitmapsExtension(b.getInt(0), b.getInt(4), b.getLong(8), b.getLong(16));
        });
    }

    // ---------------------------------------------------------------------------------------
    // parsing, validation and encoding

    /** Positional reads from wherever the image lives (a channel, a block node). */
    @FunctionalInterface
    public interface Source {
        /** Fills {@code dst} from {@code position}; bytes past the end of the image read as zeros. */
        void read(long position, ByteBuffer dst) throws IOException;
    }

    /**
     * Reads the header cluster from a file and parses it. Reads at most one cluster (2 MiB for
     * the largest cluster size QEMU opens), never past the end of the file.
     */
    public static Qcow2Header parse(FileChannel channel) throws IOException {
        return Qcow2HeaderParser.parse(channel);
    }

    /** Reads the header cluster of an image of {@code fileSize} bytes from {@code source} and parses it. */
    public static Qcow2Header read(Source source, long fileSize) throws IOException {
        return Qcow2HeaderParser.read(source, fileSize);
    }

    /**
     * Parses a header from {@code buf} (from its position), which holds the start of the image:
     * the whole header cluster, or the whole file when it is shorter than a cluster.
     */
    public static Qcow2Header parse(ByteBuffer buf) throws BlockException {
        return Qcow2HeaderParser.parse(buf);
    }

    /**
     * Checks every field against QEMU's rules and the file's size, so that no size or offset read
     * from the header can make a reader allocate without bound or read outside the file. Feature
     * bits are checked separately ({@link #unsupportedFeatures}), because which ones are refused
     * depends on the reader.
     */
    public void validate(long fileSize) throws BlockException {
        Qcow2HeaderValidator.validate(this, fileSize);
    }

    /** Entries the L1 table needs to map {@code size} bytes. */
    public static long requiredL1Entries(long size, int clusterBits, int l2Entries) {
        long bytesPerL2 = (long) l2Entries << clusterBits;
        return (size + bytesPerL2 - 1) / bytesPerL2;
    }

    /**
     * The error message for incompatible feature bits outside {@code supported}, in QEMU's words
     * ("Unsupported qcow2 feature(s): name, Unknown incompatible feature: 40"), or empty when all
     * are supported. Names come from the image's own feature name table.
     */
    public Optional<String> unsupportedFeatures(long supported) {
        return Qcow2HeaderValidator.unsupportedFeatures(this, supported);
    }

    /**
     * Encodes the whole header area: fixed header, additional fields, extensions, end marker and
     * backing file name, placed after the extensions as QEMU places it. The result is at most one
     * cluster; {@link #backingFileOffset()} of the encoded header may differ from this one's.
     */
    public byte[] encode() throws BlockException {
        return Qcow2HeaderEncoder.encode(this);
    }

    // ---------------------------------------------------------------------------------------
    // copies

    public Qcow2Header withAutoclearFeatures(long bits) {
        return copy(
                size,
                l1Size,
                l1TableOffset,
                refcountTableOffset,
                refcountTableClusters,
                incompatibleFeatures,
                bits,
                extensions);
    }

    public Qcow2Header withIncompatibleFeatures(long bits) {
        return copy(
                size,
                l1Size,
                l1TableOffset,
                refcountTableOffset,
                refcountTableClusters,
                bits,
                autoclearFeatures,
                extensions);
    }

    public Qcow2Header withRefcountTable(long offset, int clusters) {
        return copy(size, l1Size, l1TableOffset, offset, clusters, incompatibleFeatures, autoclearFeatures, extensions);
    }

    /** The header after a resize: the virtual size and the active L1 table. */
    public Qcow2Header withSizeAndL1(long newSize, int newL1Size, long newL1Offset) {
        return copy(
                newSize,
                newL1Size,
                newL1Offset,
                refcountTableOffset,
                refcountTableClusters,
                incompatibleFeatures,
                autoclearFeatures,
                extensions);
    }

    public Qcow2Header withExtensions(List<HeaderExtension> newExtensions) {
        return copy(
                size,
                l1Size,
                l1TableOffset,
                refcountTableOffset,
                refcountTableClusters,
                incompatibleFeatures,
                autoclearFeatures,
                newExtensions);
    }

    /**
     * This header naming another backing file (null for none) and format (null for none): as QEMU's
     * header update writes it, the backing format extension first, every other extension kept in its
     * order; the name's offset and length are the encoder's to place.
     */
    public Qcow2Header withBackingFile(String file, String format) {
        List<HeaderExtension> exts = new ArrayList<>();
        if (file != null && format != null) {
            exts.add(new HeaderExtension(EXT_BACKING_FORMAT, format.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
        }
        for (HeaderExtension e : extensions) {
            if (e.type() != EXT_BACKING_FORMAT) {
                exts.add(e);
            }
        }
        return copy(
                size,
                l1Size,
                l1TableOffset,
                refcountTableOffset,
                refcountTableClusters,
                incompatibleFeatures,
                autoclearFeatures,
                exts,
                0,
                0,
                file);
    }

    /**
     * This header listing another bitmap directory: the bitmaps extension replaced in place (or
     * added after the others) and the bitmaps autoclear bit set; with null, the extension removed
     * and the bit cleared (an image with no bitmaps left).
     */
    public Qcow2Header withBitmaps(BitmapsExtension ext) {
        List<HeaderExtension> next = new ArrayList<>();
        HeaderExtension replacement = null;
        if (ext != null) {
            ByteBuffer b = ByteBuffer.allocate(24)
                    .putInt(0, ext.nbBitmaps())
                    .putInt(4, ext.reserved())
                    .putLong(8, ext.directorySize())
                    .putLong(16, ext.directoryOffset());
            replacement = new HeaderExtension(EXT_BITMAPS, b.array());
        }
        boolean placed = false;
        for (HeaderExtension e : extensions) {
            if (e.type() != EXT_BITMAPS) {
                next.add(e);
            } else if (replacement != null && !placed) {
                next.add(replacement);
                placed = true;
            }
        }
        if (replacement != null && !placed) {
            next.add(replacement);
        }
        long autoclear = ext != null ? autoclearFeatures | AUTOCLEAR_BITMAPS : autoclearFeatures & ~AUTOCLEAR_BITMAPS;
        return withExtensions(next).withAutoclearFeatures(autoclear);
    }

    /** This header with the fields the {@code with} methods change replaced, every other field kept. */
    private Qcow2Header copy(
            long newSize,
            int newL1Size,
            long newL1TableOffset,
            long newRefcountTableOffset,
            int newRefcountTableClusters,
            long newIncompatibleFeatures,
            long newAutoclearFeatures,
            List<HeaderExtension> newExtensions) {
        return copy(
                newSize,
                newL1Size,
                newL1TableOffset,
                newRefcountTableOffset,
                newRefcountTableClusters,
                newIncompatibleFeatures,
                newAutoclearFeatures,
                newExtensions,
                backingFileOffset,
                backingFileSize,
                backingFile);
    }

    /** {@link #copy} naming {@code newBackingFile} at {@code newBackingOffset} (0: the encoder places it). */
    private Qcow2Header copy(
            long newSize,
            int newL1Size,
            long newL1TableOffset,
            long newRefcountTableOffset,
            int newRefcountTableClusters,
            long newIncompatibleFeatures,
            long newAutoclearFeatures,
            List<HeaderExtension> newExtensions,
            long newBackingOffset,
            int newBackingSize,
            String newBackingFile) {
        return new Qcow2Header(
                version,
                newBackingOffset,
                newBackingSize,
                clusterBits,
                newSize,
                cryptMethod,
                newL1Size,
                newL1TableOffset,
                newRefcountTableOffset,
                newRefcountTableClusters,
                nbSnapshots,
                snapshotsOffset,
                newIncompatibleFeatures,
                compatibleFeatures,
                newAutoclearFeatures,
                refcountOrder,
                headerLength,
                compressionType,
                additionalFields,
                newExtensions,
                newBackingFile);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Qcow2Header h && java.util.Arrays.equals(encodeQuietly(), h.encodeQuietly());
    }

    @Override
    public int hashCode() {
        return java.util.Arrays.hashCode(encodeQuietly());
    }

    private byte[] encodeQuietly() {
        try {
            return encode();
        } catch (BlockException e) {
            return new byte[0];
        }
    }

    @Override
    public String toString() {
        return "Qcow2Header[v" + version + ", cluster " + clusterSize() + ", size " + size + ", l1 " + l1Size + "@"
                + l1TableOffset + ", reftable " + refcountTableClusters + "@" + refcountTableOffset + ", incompat 0x"
                + Long.toHexString(incompatibleFeatures) + ", autoclear 0x" + Long.toHexString(autoclearFeatures)
                + ", refcount bits " + (1L << Math.min(refcountOrder, 62)) + ", backing " + backingFile
                + ", extensions "
                + extensions.stream()
                        .map(e -> HexFormat.of().toHexDigits(e.type()))
                        .toList() + "]";
    }
}
