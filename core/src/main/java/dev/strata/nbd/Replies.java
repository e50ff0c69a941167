package dev.strata.nbd;

import static dev.strata.block.nbd.NbdProtocol.*;

import dev.strata.block.HostRun;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Writes the replies of one connection, from whichever thread served the request.
 *
 * <p>Concurrency: each message (a simple reply with its data, or one structured chunk) goes out
 * whole under {@code lock}, so messages of different requests never interleave byte-wise; chunks
 * of different replies may alternate, which the protocol allows. Headers are small heap buffers
 * made per message; data is sent from the request's own buffer.
 */
final class Replies {
    private final Wire wire;
    private final boolean structured;
    private final ReentrantLock lock = new ReentrantLock();

    Replies(Wire wire, boolean structured) {
        this.wire = wire;
        this.structured = structured;
    }

    private void send(ByteBuffer... buffers) throws IOException {
        lock.lock();
        try {
            wire.send(buffers);
        } finally {
            lock.unlock();
        }
    }

    private static ByteBuffer simpleHeader(long handle, int error) {
        return ByteBuffer.allocate(16)
                .putInt(SIMPLE_REPLY_MAGIC)
                .putInt(error)
                .putLong(handle)
                .flip();
    }

    private static ByteBuffer chunkHeader(int flags, int type, long handle, int payloadLength, int room) {
        return ByteBuffer.allocate(20 + room)
                .putInt(STRUCTURED_REPLY_MAGIC)
                .putShort((short) flags)
                .putShort((short) type)
                .putLong(handle)
                .putInt(payloadLength);
    }

    /** Success without data: a simple reply even with structured replies, as QEMU sends it. */
    void done(long handle) throws IOException {
        send(simpleHeader(handle, 0));
    }

    /** The structured reply's closing chunk with no payload (an empty read). */
    void none(long handle) throws IOException {
        send(chunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_NONE, handle, 0, 0).flip());
    }

    /** A simple reply carrying read data. */
    void simpleData(long handle, ByteBuffer data) throws IOException {
        send(simpleHeader(handle, 0), data);
    }

    void offsetData(long handle, boolean last, long offset, ByteBuffer data) throws IOException {
        ByteBuffer h = chunkHeader(last ? REPLY_FLAG_DONE : 0, REPLY_TYPE_OFFSET_DATA, handle, 8 + data.remaining(), 8);
        send(h.putLong(offset).flip(), data);
    }

    /**
     * An OFFSET_DATA chunk whose data goes straight from a host file to the socket. A failure
     * after the header went out leaves the stream out of step: the caller ends the connection.
     */
    void offsetData(long handle, boolean last, long offset, HostRun run) throws IOException {
        ByteBuffer h =
                chunkHeader(last ? REPLY_FLAG_DONE : 0, REPLY_TYPE_OFFSET_DATA, handle, 8 + (int) run.length(), 8);
        lock.lock();
        try {
            wire.send(h.putLong(offset).flip(), run);
        } finally {
            lock.unlock();
        }
    }

    void offsetHole(long handle, boolean last, long offset, long length) throws IOException {
        ByteBuffer h = chunkHeader(last ? REPLY_FLAG_DONE : 0, REPLY_TYPE_OFFSET_HOLE, handle, 12, 12);
        send(h.putLong(offset).putInt((int) length).flip());
    }

    /** One BLOCK_STATUS chunk; {@code extents} is the descriptors, already written and flipped. */
    void blockStatus(long handle, boolean last, int contextId, ByteBuffer extents) throws IOException {
        ByteBuffer h =
                chunkHeader(last ? REPLY_FLAG_DONE : 0, REPLY_TYPE_BLOCK_STATUS, handle, 4 + extents.remaining(), 4);
        send(h.putInt(contextId).flip(), extents);
    }

    /** An error: a structured ERROR chunk with the message, or a simple reply with the number. */
    void error(long handle, int error, String message) throws IOException {
        if (!structured) {
            send(simpleHeader(handle, error));
            return;
        }
        byte[] msg = (message == null ? "" : message).getBytes(StandardCharsets.UTF_8);
        int len = Math.min(msg.length, MAX_STRING);
        ByteBuffer out = chunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, handle, 6 + len, 6 + len);
        send(out.putInt(error).putShort((short) len).put(msg, 0, len).flip());
    }
}
