package dev.strata.block.qcow2;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Opens an image for checking the way QEMU's qcow2 driver opens it in check mode: the same header
 * checks, in the same order and words, so that an image qemu-img cannot check fails here with
 * qemu-img's message ("Could not open 'x': L1 table is too small").
 *
 * <p>Check mode is more lenient than a normal open: the snapshot table is not read (the check
 * reports a broken one instead), a missing refcount table is accepted, a corrupt image may be
 * opened for repair, and no table is compared with the file's size. Strata's {@link
 * Qcow2Header#validate} is stricter for the driver, so the check does not use it.
 *
 * <p>Differences from QEMU 7.2: encrypted images are refused with the error QEMU gives when no key
 * is supplied (Strata has no keys); an external data file or backing file is only looked for, not
 * opened, and a backing file given as a protocol ("nbd:...") or json: name is not looked for.
 */
final class Qcow2CheckOpen {
    private static final int CRYPT_AES = 1;
    private static final int CRYPT_LUKS = 2;
    private static final int MAX_BACKING_FORMAT = 16;

    private Qcow2CheckOpen() {}

    /**
     * Reads and checks the header of the image in {@code file} (its file node's driver, opened and
     * locked by the caller, who also closes it).
     */
    static Qcow2CheckImage open(
            BlockDriver file, String filename, boolean writable, Qcow2CheckLog log, Qcow2CheckImage.Writes writes)
            throws IOException {
        String prefix = "Could not open '" + filename + "': ";
        Path path = Path.of(filename);
        checkBeforeParse(file, prefix);
        Qcow2Header h;
        try {
            h = Qcow2Header.read(file::read, file.length());
        } catch (BlockException e) {
            if (!e.getMessage().startsWith("Invalid qcow2 header extension")) {
                throw new BlockException(prefix + e.getMessage(), e.errno());
            }
            // QEMU reads the extensions only after checking the fixed fields: report those first
            checkHeader(fixedFieldsOnly(file, prefix), prefix);
            throw new BlockException(prefix + "Header extension too large", BlockException.EINVAL);
        }
        checkHeader(h, prefix);
        Qcow2CheckImage img = new Qcow2CheckImage(filename, file, writable, h, log, writes);
        checkEncryption(h, prefix, false);
        checkExtensions(img, prefix);
        checkDataFile(h, path, filename, prefix);
        checkEncryption(h, prefix, true);
        checkBackingFile(h, path, filename, prefix);
        return img;
    }

    /**
     * The backing file checks QEMU makes in a different order than {@link Qcow2Header#parse}: an
     * offset past the first cluster is refused early, a name longer than the cluster holds is "too
     * long" rather than "misplaced".
     */
    private static void checkBeforeParse(BlockDriver ch, String prefix) throws IOException {
        ByteBuffer b = readHead(ch, Qcow2Header.V3_HEADER_LENGTH);
        if (b.position() < Qcow2Header.V2_HEADER_LENGTH || b.getInt(0) != Qcow2Header.MAGIC) {
            return;
        }
        int version = b.getInt(4);
        if (version < 2 || version > 3) {
            return;
        }
        // QEMU reads these fields unsigned
        long clusterBits = Integer.toUnsignedLong(b.getInt(20));
        if (clusterBits < Qcow2Header.MIN_CLUSTER_BITS || clusterBits > Qcow2Header.MAX_CLUSTER_BITS) {
            throw new BlockException(prefix + "Unsupported cluster size: 2^" + clusterBits, BlockException.EINVAL);
        }
        long cs = 1L << clusterBits;
        if (version == 3) {
            if (b.position() < Qcow2Header.V3_HEADER_LENGTH) {
                return;
            }
            long headerLength = Integer.toUnsignedLong(b.getInt(100));
            if (headerLength < Qcow2Header.V3_HEADER_LENGTH) {
                throw new BlockException(prefix + "qcow2 header too short", BlockException.EINVAL);
            }
            if (headerLength > cs) {
                throw new BlockException(prefix + "qcow2 header exceeds cluster size", BlockException.EINVAL);
            }
        }
        long backingOffset = b.getLong(8);
        long backingSize = Integer.toUnsignedLong(b.getInt(16));
        if (Long.compareUnsigned(backingOffset, cs) > 0) {
            throw new BlockException(prefix + "Invalid backing file offset", BlockException.EINVAL);
        }
        if (backingOffset != 0 && backingSize > Math.min(1023, cs - backingOffset)) {
            throw new BlockException(prefix + "Backing file name too long", BlockException.EINVAL);
        }
    }

    /**
     * The fixed header fields alone, for an image whose extension area cannot be parsed: the
     * header is parsed from a copy that ends where the extensions begin and names no backing file.
     */
    private static Qcow2Header fixedFieldsOnly(BlockDriver ch, String prefix) throws IOException {
        ByteBuffer b = readHead(ch, Qcow2Header.V3_HEADER_LENGTH);
        int length = b.getInt(4) == 3 ? b.getInt(100) : Qcow2Header.V2_HEADER_LENGTH;
        ByteBuffer fixed = readHead(ch, length);
        fixed.putLong(8, 0).putInt(16, 0).flip();
        try {
            return Qcow2Header.parse(fixed);
        } catch (BlockException e) {
            throw new BlockException(prefix + e.getMessage(), e.errno());
        }
    }

    /**
     * The first {@code length} bytes of the file, or all of a shorter file: the buffer's position is
     * the number of bytes the file had.
     */
    private static ByteBuffer readHead(BlockDriver file, int length) throws IOException {
        int n = (int) Math.min(length, file.length());
        ByteBuffer b = ByteBuffer.allocate(length);
        file.read(0, b.slice(0, n));
        return b.position(n);
    }

    /** The header field checks of QEMU's open, up to reading the L1 table, in QEMU's order. */
    private static void checkHeader(Qcow2Header h, String prefix) throws BlockException {
        int ct = h.compressionType();
        if (ct != Qcow2Header.COMPRESSION_DEFLATE && ct != Qcow2Header.COMPRESSION_ZSTD) {
            throw new BlockException(prefix + "qcow2: unknown compression type: " + ct, BlockException.ENOTSUP);
        }
        boolean bit = (h.incompatibleFeatures() & Qcow2Header.INCOMPAT_COMPRESSION) != 0;
        if (ct == Qcow2Header.COMPRESSION_DEFLATE && bit) {
            throw new BlockException(
                    prefix + "qcow2: Compression type incompatible feature bit must not be set", BlockException.EINVAL);
        }
        if (ct != Qcow2Header.COMPRESSION_DEFLATE && !bit) {
            throw new BlockException(
                    prefix + "qcow2: Compression type incompatible feature bit must be set", BlockException.EINVAL);
        }
        var unsupported = h.unsupportedFeatures(Qcow2CheckImage.INCOMPAT_MASK);
        if (unsupported.isPresent()) {
            throw new BlockException(prefix + unsupported.get(), BlockException.ENOTSUP);
        }
        if (h.hasExtendedL2() && h.clusterBits() < 14) {
            throw new BlockException(
                    prefix + "Unsupported subcluster size: " + (h.clusterSize() / 32), BlockException.EINVAL);
        }
        if (h.refcountOrder() < 0 || h.refcountOrder() > 6) {
            throw new BlockException(
                    prefix + "Reference count entry width too large; may not exceed 64 bits", BlockException.EINVAL);
        }
        validateTable(
                h,
                h.refcountTableOffset(),
                Integer.toUnsignedLong(h.refcountTableClusters()),
                h.clusterSize(),
                Qcow2Header.MAX_REFTABLE_BYTES,
                "Reference count table",
                prefix);
        validateTable(
                h,
                h.l1TableOffset(),
                Integer.toUnsignedLong(h.l1Size()),
                8,
                Qcow2Header.MAX_L1_BYTES,
                "Active L1 table",
                prefix);
        long bytesPerL1Entry = (long) h.l2Entries() << h.clusterBits();
        long needed = Long.divideUnsigned(h.size() + bytesPerL1Entry - 1, bytesPerL1Entry);
        if (h.size() < 0 || needed > Integer.MAX_VALUE) {
            throw new BlockException(prefix + "Image is too big", BlockException.EFBIG);
        }
        if (Integer.toUnsignedLong(h.l1Size()) < needed) {
            throw new BlockException(prefix + "L1 table is too small", BlockException.EINVAL);
        }
    }

    /** QEMU's qcow2_validate_table: size limit first, then alignment and overflow of the offset. */
    private static void validateTable(
            Qcow2Header h, long offset, long entries, long entryLen, long maxBytes, String name, String prefix)
            throws BlockException {
        if (entries > maxBytes / entryLen) {
            throw new BlockException(prefix + name + " too large", BlockException.EFBIG);
        }
        if (offset < 0 || Long.MAX_VALUE - entries * entryLen < offset || (offset & (h.clusterSize() - 1)) != 0) {
            throw new BlockException(prefix + name + " offset invalid", BlockException.EINVAL);
        }
    }

    /**
     * Encrypted images fail as qemu-img fails without a key: an unknown method when the options are
     * read, AES when it is opened after the header extensions, LUKS when its header extension is
     * read (or found missing).
     */
    private static void checkEncryption(Qcow2Header h, String prefix, boolean afterExtensions) throws BlockException {
        int method = h.cryptMethod();
        if (method == 0) {
            return;
        }
        boolean luksHeader = h.extension(Qcow2Header.EXT_CRYPTO).isPresent();
        if (!afterExtensions && method != CRYPT_AES && method != CRYPT_LUKS) {
            throw new BlockException(prefix + "Unsupported encryption method " + method, BlockException.EINVAL);
        }
        if (afterExtensions && method == CRYPT_AES) {
            throw new BlockException(
                    prefix + "Parameter 'encrypt.key-secret' is required for cipher", BlockException.EINVAL);
        }
        if (afterExtensions && method == CRYPT_LUKS && !luksHeader) {
            throw new BlockException(
                    prefix + "Missing CRYPTO header for crypt method " + method, BlockException.EINVAL);
        }
    }

    /** QEMU's header extension parser: each known extension's rules, in on-disk order. */
    private static void checkExtensions(Qcow2CheckImage img, String prefix) throws IOException {
        Qcow2Header h = img.header;
        for (Qcow2Header.HeaderExtension e : h.extensions()) {
            switch (e.type()) {
                case Qcow2Header.EXT_BACKING_FORMAT -> {
                    if (e.length() >= MAX_BACKING_FORMAT) {
                        throw new BlockException(
                                prefix + "ERROR: ext_backing_format: len=" + e.length() + " too large (>="
                                        + MAX_BACKING_FORMAT + ")",
                                BlockException.EINVAL);
                    }
                }
                case Qcow2Header.EXT_CRYPTO -> {
                    if (h.cryptMethod() != CRYPT_LUKS) {
                        throw new BlockException(
                                prefix + "CRYPTO header extension only expected with LUKS encryption method",
                                BlockException.EINVAL);
                    }
                    throw new BlockException(
                            prefix + "Parameter 'encrypt.key-secret' is required for cipher", BlockException.EINVAL);
                }
                case Qcow2Header.EXT_BITMAPS -> checkBitmapsExtension(img, e, prefix);
                default -> {
                    // other extensions need no check to be skipped safely
                }
            }
        }
    }

    /** The bitmaps extension's rules; an extension whose autoclear bit is clear is ignored, with QEMU's warning. */
    private static void checkBitmapsExtension(Qcow2CheckImage img, Qcow2Header.HeaderExtension ext, String prefix)
            throws BlockException {
        if (ext.length() != 24) {
            throw new BlockException(prefix + "bitmaps_ext: Invalid extension length", BlockException.EINVAL);
        }
        if (Qcow2CheckBitmaps.staleExtension(img.header)) {
            img.log.warn(Qcow2CheckBitmaps.staleWarning(img.version));
            // QEMU prints this without a line end: the next message continues the line
            img.log.unterminated(Qcow2CheckBitmaps.LEAK_HINT);
            img.staleBitmapsExtension = true;
            return;
        }
        Qcow2Header.BitmapsExtension bitmaps = img.header.bitmaps().orElseThrow();
        Qcow2CheckBitmaps.checkExtension(bitmaps, img.clusterSize, prefix);
        img.bitmaps = bitmaps;
    }

    /** An image with an external data file needs it; Strata only looks for it. */
    private static void checkDataFile(Qcow2Header h, Path path, String filename, String prefix) throws BlockException {
        if ((h.incompatibleFeatures() & Qcow2Header.INCOMPAT_DATA_FILE) != 0) {
            var name = h.dataFile();
            if (name.isEmpty()) {
                throw new BlockException(prefix + "'data-file' is required for this image", BlockException.EINVAL);
            }
            String combined = combine(filename, name.get());
            if (!Files.exists(resolve(path, name.get()))) {
                throw new BlockException(prefix + "Could not open '" + combined + "': No such file or directory");
            }
        } else if ((h.autoclearFeatures() & Qcow2Header.AUTOCLEAR_DATA_FILE_RAW) != 0) {
            throw new BlockException(prefix + "data-file-raw requires a data file", BlockException.EINVAL);
        }
    }

    /** qemu-img opens the backing file too; a plain file name that does not exist fails the check. */
    private static void checkBackingFile(Qcow2Header h, Path path, String filename, String prefix)
            throws BlockException {
        String backing = h.backingFile();
        if (backing == null || backing.isEmpty() || isProtocolName(backing)) {
            return;
        }
        String combined = combine(filename, backing);
        if (!Files.exists(resolve(path, backing))) {
            throw new BlockException(prefix + "Could not open backing file: Could not open '" + combined
                    + "': No such file or directory");
        }
    }

    /** "nbd:host:port", "json:{...}": names QEMU hands to a protocol driver rather than a file. */
    private static boolean isProtocolName(String name) {
        int colon = name.indexOf(':');
        int slash = name.indexOf('/');
        return colon > 0 && (slash < 0 || colon < slash);
    }

    /** QEMU's path_combine: a relative name is taken relative to the directory of the image's name. */
    static String combine(String base, String name) {
        if (name.startsWith("/")) {
            return name;
        }
        int slash = base.lastIndexOf('/');
        return slash < 0 ? name : base.substring(0, slash + 1) + name;
    }

    private static Path resolve(Path image, String name) {
        Path n = Path.of(name);
        if (n.isAbsolute()) {
            return n;
        }
        Path parent = image.toAbsolutePath().getParent();
        return parent == null ? n : parent.resolve(n);
    }
}
