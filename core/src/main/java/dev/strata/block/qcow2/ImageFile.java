package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.HostRun;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The qcow2 image's host file (the "file" child) as the engine sees it: positional reads and writes
 * plus the file's length, tracked in memory so that every table and cluster offset read from disk
 * can be checked against it without a system call.
 *
 * <p>The tracked length grows with this process's own writes and shrinks only through
 * {@link #truncate}; another writer cannot exist
 * because the image is opened exclusively (or read-only, where it does not change).
 */
final class ImageFile {
    private final BlockNode node;
    private final AtomicLong length;
    private final DeferredMetadata deferred = new DeferredMetadata(this);

    ImageFile(BlockNode node) throws IOException {
        this.node = node;
        this.length = new AtomicLong(node.length());
    }

    /** The metadata writes held back while write-back is on (off unless a backup's target). */
    DeferredMetadata deferred() {
        return deferred;
    }

    BlockNode node() {
        return node;
    }

    long length() {
        return length.get();
    }

    /** Writes the header at the start of the file (its encoding: fields, extensions, backing name). */
    void writeHeader(Qcow2Header h) throws IOException {
        byte[] b = h.encode();
        write(0, b, 0, b.length);
    }

    void read(long pos, ByteBuffer dst) throws IOException {
        node.read(pos, dst);
    }

    void read(long pos, byte[] dst, int off, int len) throws IOException {
        node.read(pos, ByteBuffer.wrap(dst, off, len));
    }

    /**
     * A metadata table of {@code size} bytes at {@code pos}, for a cache that misses it: the copy
     * waiting in write-back if there is one (the file's is stale), else read from the file.
     */
    byte[] readTable(long pos, int size) throws IOException {
        byte[] waiting = deferred.pending(pos);
        if (waiting != null) {
            return waiting;
        }
        byte[] t = new byte[size];
        read(pos, t, 0, size);
        return t;
    }

    void write(long pos, ByteBuffer src) throws IOException {
        long end = pos + src.remaining();
        node.write(pos, src);
        length.accumulateAndGet(end, Math::max);
    }

    /** Copy offload: stores the bytes of {@code run} at {@code pos}, inside the kernel where it can. */
    void writeHost(long pos, HostRun run) throws IOException {
        long end = pos + run.length();
        node.writeHost(pos, run);
        length.accumulateAndGet(end, Math::max);
    }

    void write(long pos, byte[] src, int off, int len) throws IOException {
        write(pos, ByteBuffer.wrap(src, off, len));
    }

    /** Cuts the file (a shrink frees its tail first); the tracked length follows. */
    void truncate(long newLength) throws IOException {
        node.truncate(newLength);
        length.set(newLength);
    }

    void flush() throws IOException {
        node.flush();
    }

    /** Refuses a structure that does not lie wholly inside the file. */
    void checkInside(String what, long offset, long bytes) throws BlockException {
        if (offset < 0 || bytes < 0 || offset > length() - bytes) {
            throw new BlockException(what + " at offset 0x" + Long.toHexString(offset) + " (" + bytes
                    + " bytes) lies outside the image file (size " + length() + "); the image is corrupt");
        }
    }
}
