package dev.strata.block;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.WritableByteChannel;

/**
 * A host file whose bytes a request can move without reading them into the process (copy
 * offload): a backup or a convert copies data clusters file to file with {@code copy_file_range},
 * and the NBD server sends them to a socket with {@code sendfile}. Implemented by the "file"
 * driver; see {@link HostRun} for how a node finds where its bytes lie.
 */
public interface HostFile {

    /**
     * Copies {@code [pos, pos+len)} of this file to {@code dst} at {@code dstPos} inside the kernel;
     * returns the bytes copied, at least one, or 0 when the kernel cannot copy between these two
     * files (the caller then copies through memory).
     */
    long copyTo(long pos, long len, HostFile dst, long dstPos) throws IOException;

    /** Sends {@code [pos, pos+len)} to {@code out}, all of it (sendfile where the JDK can). */
    void sendTo(long pos, long len, WritableByteChannel out) throws IOException;

    /** Reads {@code [pos, pos+dst.remaining())} into {@code dst}, zeros past the end of the file. */
    void read(long pos, ByteBuffer dst) throws IOException;
}
