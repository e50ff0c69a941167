package dev.strata.nbd;

import dev.strata.block.HostRun;
import dev.strata.block.nbd.NbdProtocol;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.GatheringByteChannel;

/**
 * The byte stream of one NBD connection, with the connection's reusable buffers.
 *
 * <p>Buffers are direct and kept for the life of the connection. The scratch buffer is the
 * reader's (request headers, option headers); the output and skip buffers serve the handshake.
 * Requests bring their own buffers ({@link BufferPool}). {@link #send} is not synchronized:
 * during transmission only {@link Replies} calls it, under its lock.
 */
final class Wire implements AutoCloseable {
    private static final int INITIAL = 64 << 10;

    private final ByteChannel channel;
    private final ByteBuffer in = ByteBuffer.allocateDirect(64);
    private ByteBuffer out = ByteBuffer.allocateDirect(INITIAL);
    private ByteBuffer data = ByteBuffer.allocateDirect(INITIAL);

    Wire(ByteChannel channel) {
        this.channel = channel;
    }

    /** Reads exactly {@code n} bytes (at most 64) into the scratch buffer and returns it flipped. */
    ByteBuffer read(int n) throws IOException {
        in.clear().limit(n);
        readFully(in);
        return in.flip();
    }

    long readLong() throws IOException {
        return read(8).getLong();
    }

    int readInt() throws IOException {
        return read(4).getInt();
    }

    void readFully(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            if (channel.read(b) < 0) {
                throw new EOFException("client closed the connection");
            }
        }
    }

    /** Reads {@code n} bytes into a fresh array (handshake options only, bounded by the caller). */
    byte[] readBytes(int n) throws IOException {
        byte[] bytes = new byte[n];
        readFully(ByteBuffer.wrap(bytes));
        return bytes;
    }

    /** Reads and drops {@code n} bytes through the data buffer. */
    void skip(long n) throws IOException {
        long left = n;
        while (left > 0) {
            ByteBuffer b = data((int) Math.min(left, NbdProtocol.MAX_BUFFER));
            readFully(b);
            left -= b.limit();
        }
    }

    /** The data buffer, cleared, with exactly {@code size} bytes of room. */
    ByteBuffer data(int size) {
        if (data.capacity() < size) {
            data = ByteBuffer.allocateDirect(grow(data.capacity(), size));
        }
        return data.clear().limit(size);
    }

    /** The output buffer, cleared, with at least {@code size} bytes of room. */
    ByteBuffer out(int size) {
        if (out.capacity() < size) {
            out = ByteBuffer.allocateDirect(grow(out.capacity(), size));
        }
        return out.clear();
    }

    private static int grow(int capacity, int size) {
        long c = capacity;
        while (c < size) {
            c <<= 1;
        }
        return (int) Math.min(c, Math.max(size, NbdProtocol.MAX_BUFFER + 4096L));
    }

    /** Writes every buffer completely, in one gathering write where the channel allows. */
    void send(ByteBuffer... buffers) throws IOException {
        if (channel instanceof GatheringByteChannel g) {
            long left = 0;
            for (ByteBuffer b : buffers) {
                left += b.remaining();
            }
            while (left > 0) {
                left -= g.write(buffers);
            }
            return;
        }
        for (ByteBuffer b : buffers) {
            while (b.hasRemaining()) {
                channel.write(b);
            }
        }
    }

    /** Sends {@code header}, then the bytes of {@code run} straight from its host file (sendfile). */
    void send(ByteBuffer header, HostRun run) throws IOException {
        send(header);
        run.file().sendTo(run.offset(), run.length(), channel);
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
