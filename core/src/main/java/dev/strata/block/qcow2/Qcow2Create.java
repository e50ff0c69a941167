package dev.strata.block.qcow2;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.OpenContext;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Creates empty qcow2 version 3 images laid out as qemu-img lays them out: header in cluster 0,
 * the refcount table from cluster 1, the first refcount block after it, then the L1 table, with
 * 16-bit refcounts and QEMU's feature name table.
 *
 * <p>Images whose metadata outgrows the first refcount block get their further blocks right after
 * the L1 table (as qemu-img places them); a table too big for one cluster grows in place. With
 * {@code preallocation=metadata} the L2 tables and data clusters are then allocated through the
 * driver's own allocator, and the file is extended (sparsely) over the last data cluster.
 */
public final class Qcow2Create {
    private Qcow2Create() {}

    /** QEMU's preallocation modes that Strata supports for qcow2. */
    public enum Preallocation {
        OFF,
        METADATA;

        public static Preallocation parse(String s) throws BlockException {
            return switch (s) {
                case "off" -> OFF;
                case "metadata" -> METADATA;
                default ->
                    throw new BlockException(
                            "Unsupported preallocation mode '" + s + "' (Strata supports off and metadata)",
                            BlockException.ENOTSUP);
            };
        }
    }

    /**
     * What to create.
     *
     * @param size virtual size in bytes, rounded up to 512; -1 to take the backing file's size
     * @param clusterSize power of two from 512 to 2 MiB
     * @param backingFile backing file name as stored in the image (relative to the image's
     *     directory), or null
     * @param backingFormat the backing file's format; required with a backing file, as qemu-img
     * @param preallocation off or metadata
     * @param lazyRefcounts sets the lazy refcounts compatible bit (Strata's writes do not rely on it)
     * @param compat "1.1" or "v3" (version 3), "0.10" or "v2" (version 2)
     * @param refcountBits the refcount width: a power of two from 1 to 64 (16 unless version 3)
     * @param compressionType "zlib" or "zstd" (version 3)
     */
    public record Options(
            long size,
            int clusterSize,
            String backingFile,
            String backingFormat,
            Preallocation preallocation,
            boolean lazyRefcounts,
            String compat,
            int refcountBits,
            String compressionType) {
        public static final int DEFAULT_CLUSTER_SIZE = 65536;

        /** Options with QEMU's defaults for the refcount width (16) and the compression type (zlib). */
        public Options(
                long size,
                int clusterSize,
                String backingFile,
                String backingFormat,
                Preallocation preallocation,
                boolean lazyRefcounts,
                String compat) {
            this(size, clusterSize, backingFile, backingFormat, preallocation, lazyRefcounts, compat, 16, "zlib");
        }

        public static Options of(long size) {
            return new Options(size, DEFAULT_CLUSTER_SIZE, null, null, Preallocation.OFF, false, "1.1");
        }

        /** Version 2 (compat 0.10), else 3. */
        public boolean version2() {
            return "0.10".equals(compat) || "v2".equals(compat);
        }

        public Options withClusterSize(int cs) {
            return new Options(
                    size,
                    cs,
                    backingFile,
                    backingFormat,
                    preallocation,
                    lazyRefcounts,
                    compat,
                    refcountBits,
                    compressionType);
        }

        public Options withBacking(String file, String format) {
            return new Options(
                    size,
                    clusterSize,
                    file,
                    format,
                    preallocation,
                    lazyRefcounts,
                    compat,
                    refcountBits,
                    compressionType);
        }

        public Options withPreallocation(Preallocation p) {
            return new Options(
                    size,
                    clusterSize,
                    backingFile,
                    backingFormat,
                    p,
                    lazyRefcounts,
                    compat,
                    refcountBits,
                    compressionType);
        }

        public Options withLazyRefcounts(boolean lazy) {
            return new Options(
                    size,
                    clusterSize,
                    backingFile,
                    backingFormat,
                    preallocation,
                    lazy,
                    compat,
                    refcountBits,
                    compressionType);
        }
    }

    /** QEMU's feature name table, in QEMU's order. */
    private static final List<Qcow2Header.FeatureName> FEATURES = List.of(
            new Qcow2Header.FeatureName(0, 0, "dirty bit"),
            new Qcow2Header.FeatureName(0, 1, "corrupt bit"),
            new Qcow2Header.FeatureName(0, 2, "external data file"),
            new Qcow2Header.FeatureName(0, 3, "compression type"),
            new Qcow2Header.FeatureName(0, 4, "extended L2 entries"),
            new Qcow2Header.FeatureName(1, 0, "lazy refcounts"),
            new Qcow2Header.FeatureName(2, 0, "bitmaps"),
            new Qcow2Header.FeatureName(2, 1, "raw external data"));

    /**
     * Creates (or overwrites) the image {@code filename}, as QEMU does over a file node: the host
     * file is created (or emptied) through {@link BlockGraph#createFile}, which refuses a file in
     * use, then opened as a file node through {@code graph} (not joining it), with its image lock,
     * and formatted through it; a backing file is opened through {@code graph} to check it and take its size.
     */
    public static void create(BlockGraph graph, String filename, Options o) throws IOException {
        create(graph, filename, o, true);
    }

    /**
     * {@link #create(BlockGraph, String, Options)}; with {@code openBacking} false the backing file
     * is only named, never opened (qemu-img create -u), so a size must be given.
     */
    public static void create(BlockGraph graph, String filename, Options o, boolean openBacking) throws IOException {
        checkOptions(o);
        long size = o.size();
        if (o.backingFile() != null && openBacking) {
            long backingSize = backingSize(graph, Path.of(filename), o.backingFile(), o.backingFormat());
            if (size < 0) {
                size = backingSize;
            }
        }
        if (size < 0) {
            throw new BlockException("Image creation needs a size parameter", BlockException.EINVAL);
        }
        graph.createFile(filename, 0);
        BlockOptions fileOptions = BlockOptions.empty().put("driver", "file").put("filename", filename);
        try (BlockNode fileNode = graph.openDetached(fileOptions)) {
            format(fileNode.driver(), o, size);
        }
        if (o.preallocation() == Preallocation.METADATA && size > 0) {
            preallocate(graph, BlockOptions.empty().put("driver", "qcow2").put("file", fileOptions));
        }
    }

    /** The options' own rules, checked before anything is created or written. */
    public static void checkOptions(Options o) throws BlockException {
        int cs = o.clusterSize();
        if (cs < 512 || cs > (2 << 20) || Integer.bitCount(cs) != 1) {
            throw new BlockException(
                    "Cluster size must be a power of two between 512 and 2048k", BlockException.EINVAL);
        }
        int bits = o.refcountBits();
        if (bits < 1 || bits > 64 || Integer.bitCount(bits) != 1) {
            throw new BlockException(
                    "Refcount width must be a power of two and may not exceed 64 bits", BlockException.EINVAL);
        }
        String compat = o.compat() == null ? "1.1" : o.compat();
        if (!List.of("1.1", "v3", "0.10", "v2").contains(compat)) {
            throw new BlockException("Invalid compatibility level: '" + compat + "'", BlockException.EINVAL);
        }
        if (o.version2() && o.lazyRefcounts()) {
            throw new BlockException(
                    "Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)",
                    BlockException.EINVAL);
        }
        if (o.version2() && bits != 16) {
            throw new BlockException(
                    "Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or"
                            + " greater)",
                    BlockException.EINVAL);
        }
        String compression = o.compressionType() == null ? "zlib" : o.compressionType();
        if (!compression.equals("zlib") && !compression.equals("zstd")) {
            throw new BlockException("Invalid compression type: '" + compression + "'", BlockException.EINVAL);
        }
        if (o.version2() && !compression.equals("zlib")) {
            throw new BlockException(
                    "Non-zlib compression type is only supported with compatibility level 1.1 and above (use"
                            + " version=v3 or greater)",
                    BlockException.EINVAL);
        }
        if (o.backingFile() != null && o.preallocation() != Preallocation.OFF) {
            throw new BlockException(
                    "Backing file and preallocation can only be used at the same time if extended_l2 is on",
                    BlockException.EINVAL);
        }
    }

    /**
     * Writes an empty qcow2 image of {@code virtualSize} bytes (rounded up to 512) into {@code file}
     * (a protocol node's driver, opened read-write by the caller): header, refcount table and blocks
     * and L1 table are written and flushed. As with QEMU, nothing else of the file is touched: bytes
     * past the new metadata stay, and a longer file keeps its length. The backing file is
     * only named (blockdev-create does not open it).
     */
    public static void format(BlockDriver file, Options o, long virtualSize) throws IOException {
        checkOptions(o);
        int cs = o.clusterSize();
        long size = (virtualSize + 511) & -512L;
        int clusterBits = Integer.numberOfTrailingZeros(cs);
        long l1Entries = Qcow2Header.requiredL1Entries(size, clusterBits, cs / 8);
        if (l1Entries * 8 > Qcow2Header.MAX_L1_BYTES) {
            throw new BlockException("Image size is too large for this cluster size", BlockException.EFBIG);
        }

        // layout: header, refcount table (r clusters), block 0, L1, blocks 1.. (fixed point)
        int refcountOrder = Integer.numberOfTrailingZeros(o.refcountBits());
        long blockEntries = (long) cs * 8 / o.refcountBits();
        boolean v2 = o.version2();
        boolean zstd = "zstd".equals(o.compressionType());
        long l1Clusters = (l1Entries * 8 + cs - 1) / cs;
        long r = 1;
        long blocks = 1;
        while (true) {
            long total = 1 + r + 1 + l1Clusters + (blocks - 1);
            long nb = (total + blockEntries - 1) / blockEntries;
            long nr = (nb * 8 + cs - 1) / cs;
            if (nb == blocks && nr == r) {
                break;
            }
            blocks = nb;
            r = nr;
        }
        long total = 1 + r + 1 + l1Clusters + (blocks - 1);
        long reftableOffset = (long) cs;
        long l1Offset = l1Entries == 0 ? 0 : (2 + r) * (long) cs;
        long[] blockOffsets = new long[(int) blocks];
        blockOffsets[0] = (1 + r) * (long) cs;
        for (int j = 1; j < blocks; j++) {
            blockOffsets[j] = (2 + r + l1Clusters + j - 1) * cs;
        }

        List<Qcow2Header.HeaderExtension> exts = new ArrayList<>();
        if (o.backingFile() != null && o.backingFormat() != null) {
            exts.add(new Qcow2Header.HeaderExtension(
                    Qcow2Header.EXT_BACKING_FORMAT, o.backingFormat().getBytes(StandardCharsets.UTF_8)));
        }
        // qemu-img 7.2 writes the feature name table only with clusters of 8 KiB and more, and
        // none into a version 2 image
        if (cs >= 8192 && !v2) {
            exts.add(new Qcow2Header.HeaderExtension(Qcow2Header.EXT_FEATURE_TABLE, featureTable()));
        }
        Qcow2Header header = new Qcow2Header(
                v2 ? 2 : 3,
                0,
                0,
                clusterBits,
                size,
                0,
                (int) l1Entries,
                l1Offset,
                reftableOffset,
                (int) r,
                0,
                0,
                zstd ? Qcow2Header.INCOMPAT_COMPRESSION : 0,
                o.lazyRefcounts() ? Qcow2Header.COMPAT_LAZY_REFCOUNTS : 0,
                0,
                refcountOrder,
                v2 ? Qcow2Header.V2_HEADER_LENGTH : Qcow2Header.V3_DEFAULT_HEADER_LENGTH,
                zstd ? Qcow2Header.COMPRESSION_ZSTD : Qcow2Header.COMPRESSION_DEFLATE,
                v2 ? new byte[0] : new byte[Qcow2Header.V3_DEFAULT_HEADER_LENGTH - Qcow2Header.V3_HEADER_LENGTH],
                exts,
                o.backingFile());

        file.write(0, ByteBuffer.wrap(header.encode()));
        ByteBuffer table = ByteBuffer.allocate((int) (r * cs));
        for (int j = 0; j < blocks; j++) {
            table.putLong(8 * j, blockOffsets[j]);
        }
        file.write(reftableOffset, table);
        for (int j = 0; j < blocks; j++) {
            ByteBuffer b = ByteBuffer.allocate(cs);
            for (long c = j * blockEntries; c < Math.min(total, (j + 1) * blockEntries); c++) {
                Refcounts.setEntry(refcountOrder, b.array(), (int) (c - j * blockEntries), 1);
            }
            file.write(blockOffsets[j], b);
        }
        if (l1Entries > 0) {
            file.write(l1Offset, ByteBuffer.allocate((int) (l1Entries * 8)));
        }
        file.flush();
    }

    /**
     * qemu-img's {@code preallocation=metadata}: opens the new image from {@code qcow2Options}
     * (through {@code graph}, not joining it) and allocates its L2 tables and data clusters.
     */
    public static void preallocate(BlockGraph graph, BlockOptions qcow2Options) throws IOException {
        try (BlockNode node = graph.openDetached(qcow2Options)) {
            ((Qcow2Driver) node.driver()).preallocateMetadata();
        }
    }

    private static long backingSize(BlockGraph graph, Path image, String backingFile, String backingFormat)
            throws IOException {
        Path resolved = OpenContext.resolveBacking(image, backingFile);
        if (backingFormat == null) {
            String detected = graph.probe(resolved.toString());
            throw new BlockException(
                    "Backing file specified without backing format\nDetected format of " + detected + ".",
                    BlockException.EINVAL);
        }
        BlockOptions backing = BlockOptions.empty()
                .put("driver", backingFormat)
                .put("file", BlockOptions.empty().put("driver", "file").put("filename", resolved.toString()))
                .put("read-only", true)
                .put("force-share", true);
        try (BlockNode node = graph.openDetached(backing)) {
            return node.length();
        } catch (BlockException e) {
            throw new BlockException(e.getMessage() + "\nCould not open backing image.", e.errno());
        }
    }

    private static byte[] featureTable() {
        byte[] t = new byte[48 * FEATURES.size()];
        for (int i = 0; i < FEATURES.size(); i++) {
            Qcow2Header.FeatureName f = FEATURES.get(i);
            t[48 * i] = (byte) f.kind();
            t[48 * i + 1] = (byte) f.bit();
            byte[] name = f.name().getBytes(StandardCharsets.US_ASCII);
            System.arraycopy(name, 0, t, 48 * i + 2, name.length);
        }
        return t;
    }
}
