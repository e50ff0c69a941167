package dev.strata.qmp.commands;

import dev.strata.block.BlockNode;
import dev.strata.block.dirty.DirtyBitmap;
import dev.strata.qmp.schema.Qapi;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The query results that describe nodes, with the members qemu-storage-daemon 7.2 returns (QAPI's
 * BlockDeviceInfo, ImageInfo, BlockDirtyInfo, BlockInfo), and how Strata fills them from a node.
 *
 * <p>Strata has no throttling, encryption, write threshold or zero detection, so those members
 * report what is true of it: zero, false, "off".
 */
final class NodeInfo {
    private NodeInfo() {}

    /** QAPI's BlockDirtyInfo. {@code inconsistent} is present only when true, as in QEMU. */
    record BlockDirtyInfo(
            @Qapi.Optional String name,
            long count,
            @Qapi.Int(Qapi.IntKind.UINT32) long granularity,
            boolean recording,
            boolean busy,
            boolean persistent,
            @Qapi.Optional Boolean inconsistent) {}

    /** QAPI's BlockdevCacheInfo. */
    record BlockdevCacheInfo(boolean writeback, boolean direct, boolean noFlush) {}

    /** QAPI's ImageInfoSpecific: the driver's name and its own facts. */
    record ImageInfoSpecific(String type, Map<String, Object> data) {}

    /** QAPI's ImageInfo (the members Strata can fill). */
    record ImageInfo(
            String filename,
            String format,
            long virtualSize,
            @Qapi.Optional Long actualSize,
            @Qapi.Optional Long clusterSize,
            @Qapi.Optional Boolean dirtyFlag,
            @Qapi.Optional String backingFilename,
            @Qapi.Optional String fullBackingFilename,
            @Qapi.Optional ImageInfoSpecific formatSpecific,
            @Qapi.Optional ImageInfo backingImage) {}

    /** QAPI's BlockDeviceInfo as QEMU 7.2 returns it. */
    record BlockDeviceInfo(
            String file,
            String nodeName,
            boolean ro,
            String drv,
            @Qapi.Optional @Qapi.Name("backing_file") String backingFile,
            @Qapi.Name("backing_file_depth") long backingFileDepth,
            boolean encrypted,
            @Qapi.Name("detect_zeroes") String detectZeroes,
            long bps,
            @Qapi.Name("bps_rd") long bpsRd,
            @Qapi.Name("bps_wr") long bpsWr,
            long iops,
            @Qapi.Name("iops_rd") long iopsRd,
            @Qapi.Name("iops_wr") long iopsWr,
            ImageInfo image,
            BlockdevCacheInfo cache,
            @Qapi.Name("write_threshold") long writeThreshold,
            @Qapi.Optional List<BlockDirtyInfo> dirtyBitmaps) {}

    /**
     * QAPI's BlockInfo: a drive (removable, as QEMU's {@code if=none} drives are), or a root node
     * without one, listed under its node-name.
     */
    record BlockInfo(String device, String type, boolean removable, boolean locked, BlockDeviceInfo inserted) {}

    static List<BlockDirtyInfo> dirtyInfo(BlockNode node) {
        List<BlockDirtyInfo> out = new ArrayList<>();
        for (DirtyBitmap b : node.bitmaps().all()) {
            out.add(new BlockDirtyInfo(
                    b.name(),
                    b.count(),
                    b.granularity(),
                    b.recording(),
                    b.busy(),
                    b.persistent(),
                    b.inconsistent() ? Boolean.TRUE : null));
        }
        return out;
    }

    /**
     * The node below in the chain QEMU reports: the backing file, or a filter's filtered child
     * (QEMU shows a copy-before-write node's source as its "backing-image").
     */
    private static BlockNode below(BlockNode node) {
        return node.driver().isFilter()
                ? node.file().orElse(null)
                : node.backing().orElse(null);
    }

    static BlockDeviceInfo deviceInfo(BlockNode node, boolean flat) throws IOException {
        int depth = 0;
        for (BlockNode b = below(node); b != null; b = below(b)) {
            depth++;
        }
        List<BlockDirtyInfo> bitmaps = dirtyInfo(node);
        return new BlockDeviceInfo(
                node.filename(),
                node.nodeName(),
                node.readOnly(),
                node.driverName(),
                node.backing().map(BlockNode::filename).orElse(null),
                depth,
                false,
                "off",
                0,
                0,
                0,
                0,
                0,
                0,
                imageInfo(node, flat),
                new BlockdevCacheInfo(true, false, node.noFlush()),
                0,
                bitmaps.isEmpty() ? null : bitmaps);
    }

    static ImageInfo imageInfo(BlockNode node, boolean flat) throws IOException {
        long actual = node.driver().allocatedFileSize();
        int cluster = node.clusterSize();
        Map<String, Object> specific = node.driver().formatSpecific();
        BlockNode backing = node.backing().orElse(null);
        BlockNode below = below(node);
        return new ImageInfo(
                node.filename(),
                node.driverName(),
                // QEMU counts a protocol node's length in whole 512-byte sectors
                node.driver().growable() ? (node.length() + 511) & ~511L : node.length(),
                actual >= 0 ? actual : null,
                cluster > 0 ? (long) cluster : null,
                false,
                backing == null ? null : backing.filename(),
                backing == null ? null : backing.filename(),
                specific.isEmpty() ? null : new ImageInfoSpecific(node.driverName(), specific),
                below == null || flat ? null : imageInfo(below, false));
    }
}
