package dev.strata.block;

import dev.strata.block.dirty.StoredBitmap;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;

/**
 * The per-node state and I/O of one driver (file, raw, qcow2, null-co, ...), seen from its node.
 *
 * <p>Contract for every method: offsets and lengths are guest bytes of this node, already checked
 * by {@link BlockNode} to lie inside {@code [0, length())}. Reads fill the whole buffer (from its
 * position to its limit) and advance its position; writes consume the whole buffer. A driver that
 * reads through a backing child does so itself (as QEMU's qcow2 does); block status, on the other
 * hand, reports only this layer and {@link BlockNode} walks the chain.
 *
 * <p>Concurrency: a driver must allow concurrent calls from several threads; how it serialises
 * its metadata is its own business.
 */
public interface BlockDriver extends AutoCloseable {

    /** The driver's name as QEMU spells it: "file", "raw", "qcow2", "null-co". */
    String format();

    /** Virtual size in bytes. */
    long length() throws IOException;

    void read(long offset, ByteBuffer dst) throws IOException;

    void write(long offset, ByteBuffer src) throws IOException;

    /**
     * Makes {@code [offset, offset+length)} read as zeros. With {@code mayUnmap} the driver may
     * deallocate (QEMU's BDRV_REQ_MAY_UNMAP); without it, allocation is kept where it exists.
     */
    void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException;

    /** Hints that the range is no longer needed; its contents become unspecified (zero or backing). */
    void discard(long offset, long length) throws IOException;

    /** Makes every completed write durable (metadata included). */
    void flush() throws IOException;

    /**
     * Asks the host to start writing this node's completed writes to disk, without waiting, so that
     * a later {@link #flush} has less left to do (a long backup overlaps its copying with the disk
     * writes its final flush would otherwise wait for). Durability still comes only from flush.
     */
    default void startWriteback() throws IOException {}

    /**
     * Lets the metadata that allocating writes change wait in memory until the next {@link #flush}
     * (on), or writes it back and stops (off). For a backup's target, whose contents count only
     * once the job has flushed it: a crash meanwhile loses unflushed writes but leaves no
     * corruption. Drivers without such metadata ignore it.
     */
    default void setMetadataWriteback(boolean on) throws IOException {}

    /**
     * Allocation status of this layer over {@code [offset, offset+length)}: contiguous extents
     * starting at {@code offset}, covering at least one byte and at most the range. Callers loop.
     */
    List<Extent> blockStatus(long offset, long length) throws IOException;

    /**
     * Copy offload, read side: where the first bytes of {@code [offset, offset+length)} of this layer
     * lie in a host file, or null when they are not stored plainly (holes, zero or compressed
     * clusters, data of a backing file, a driver that must see every read): the caller then reads
     * them. A format driver resolves its runs through its file child ({@link BlockNode#hostRun}).
     * The run may be shorter than asked, never longer.
     */
    default HostRun hostRun(long offset, long length) throws IOException {
        return null;
    }

    /**
     * Copy offload, write side: writes the bytes of {@code run} to {@code [offset,
     * offset+run.length())} as {@link #write} would, without reading them into memory where the
     * layers below allow. Returns false, having written nothing, when this request cannot be served
     * so (a cluster written in part, a driver that must see the data); {@link BlockNode#writeHost}
     * then writes it through memory.
     */
    default boolean writeHost(long offset, HostRun run) throws IOException {
        return false;
    }

    /** Children by role ("file", "backing"), in the order QEMU lists them. */
    default Map<String, BlockNode> children() {
        return Map.of();
    }

    /**
     * Whether reads and writes may go past {@link #length()}: true for protocol drivers such as
     * "file", which a format driver grows by writing past the end (reads there return zeros).
     */
    default boolean growable() {
        return false;
    }

    /** Changes the virtual size; drivers that cannot resize refuse with a clear error. */
    default void truncate(long newLength) throws IOException {
        throw new BlockException("Driver '" + format() + "' does not support resizing", BlockException.ENOTSUP);
    }

    /**
     * Whether the node only passes requests to its "file" child (QEMU's is_filter): a backup's
     * copy-before-write. Such a node is never drained itself, and backups skip it for its child.
     */
    default boolean isFilter() {
        return false;
    }

    /** Whether this driver refuses writes. */
    boolean readOnly();

    /** Preferred I/O alignment and cluster size for callers that copy (qemu-img's cluster_size). */
    default int clusterSize() {
        return 0;
    }

    /**
     * What QEMU warns about when it opens this image, each as qemu-img prints it after "qemu-img:
     * warning: " (a text may span lines and carries its own line ends, none at its end when QEMU
     * prints none); empty for most images.
     */
    default List<String> openWarnings() {
        return List.of();
    }

    // ---- persistent bitmaps (QEMU's: stored in the image, loaded at open, stored at close)

    /** Whether the format can store bitmaps at all (qcow2); if not, a persistent bitmap is refused. */
    default boolean storesBitmaps() {
        return false;
    }

    /**
     * Whether this image can hold persistent bitmaps (QEMU's bdrv_supports_persistent_dirty_bitmap:
     * a qcow2 image of version 3); a format that stores bitmaps may still refuse a given image.
     */
    default boolean supportsPersistentBitmaps() {
        return storesBitmaps();
    }

    /**
     * The bitmaps the image stores, as read at open, handed over once: the node that takes them
     * calls this, then {@link #trackStoredBitmaps}. Empty for most images.
     */
    default List<StoredBitmap> storedBitmaps() {
        return List.of();
    }

    /**
     * The node now keeps the stored bitmaps in memory: a writable image marks them in use on disk
     * before the first write, so that a crash leaves them inconsistent rather than stale.
     */
    default void trackStoredBitmaps() throws IOException {}

    /**
     * Refuses, with the format's reason, a new persistent bitmap the image could not store;
     * {@code persistentNames} are the node's persistent bitmaps now.
     */
    default void checkNewPersistentBitmap(String name, long granularity, List<String> persistentNames)
            throws BlockException {}

    /** Deletes a stored bitmap from the image at once; a name the image does not list is no error. */
    default void removeStoredBitmap(String name) throws IOException {}

    /**
     * Stores the node's persistent bitmaps (at close), replacing the image's entries of the same
     * names; entries not named stay as they are.
     */
    default void storeBitmaps(List<StoredBitmap> bitmaps) throws IOException {}

    /** Driver-specific facts for {@code info} (format-specific data), never null. */
    default Map<String, Object> formatSpecific() {
        return Map.of();
    }

    /** Size the node's files take on the host, or -1 when unknown. */
    default long allocatedFileSize() throws IOException {
        return -1;
    }

    /**
     * A point in a parent format driver's request ("write_aio" before a guest data write, "l2_update",
     * "flush_to_disk": QEMU's BlkdebugEvent names), fired on the child the request goes to. Only a
     * fault-injection driver ({@code blkdebug}) reacts; everyone else ignores it.
     */
    default void debugEvent(String event) {}

    /** Releases the driver's resources; children are closed by their nodes, not here. */
    @Override
    void close() throws IOException;
}
