package dev.strata.nbd;

import static dev.strata.block.nbd.NbdProtocol.*;

import java.io.EOFException;
import java.io.IOException;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * A small NBD client for tests that need to say what real clients never say: raw bytes, bad
 * requests, half requests. It speaks fixed newstyle with structured replies when asked.
 */
final class NbdTestClient implements AutoCloseable {
    final SocketChannel channel;
    long size;
    int flags;
    boolean structured;

    private NbdTestClient(SocketChannel channel) {
        this.channel = channel;
    }

    static NbdTestClient connect(SocketAddress address) throws IOException {
        SocketChannel ch = address instanceof UnixDomainSocketAddress
                ? SocketChannel.open(StandardProtocolFamily.UNIX)
                : SocketChannel.open();
        ch.connect(address);
        return new NbdTestClient(ch);
    }

    /** One reply to an option. */
    record OptionReply(int option, int type, byte[] data) {
        String text() {
            return new String(data, StandardCharsets.UTF_8);
        }
    }

    /** One reply chunk (a simple reply is one chunk of type -1 with the error in {@code error}). */
    record Chunk(int flags, int type, long handle, int error, byte[] payload) {
        boolean done() {
            return type < 0 || (flags & REPLY_FLAG_DONE) != 0;
        }

        int structuredError() {
            return ByteBuffer.wrap(payload).getInt();
        }

        String message() {
            ByteBuffer b = ByteBuffer.wrap(payload);
            b.getInt();
            int len = Short.toUnsignedInt(b.getShort());
            byte[] m = new byte[len];
            b.get(m);
            return new String(m, StandardCharsets.UTF_8);
        }
    }

    /** Reads the greeting and sends client flags (fixed newstyle, no zeroes). */
    NbdTestClient greet() throws IOException {
        ByteBuffer g = read(18);
        if (g.getLong() != NBDMAGIC || g.getLong() != IHAVEOPT) {
            throw new IOException("bad greeting");
        }
        send(ByteBuffer.allocate(4)
                .putInt(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
                .flip());
        return this;
    }

    void option(int option, byte[] data) throws IOException {
        send(ByteBuffer.allocate(16 + data.length)
                .putLong(IHAVEOPT)
                .putInt(option)
                .putInt(data.length)
                .put(data)
                .flip());
    }

    OptionReply optionReply() throws IOException {
        ByteBuffer h = read(20);
        if (h.getLong() != OPTION_REPLY_MAGIC) {
            throw new IOException("bad option reply magic");
        }
        int option = h.getInt();
        int type = h.getInt();
        int len = h.getInt();
        return new OptionReply(option, type, bytes(len));
    }

    /** Replies up to and including the ACK or the first error. */
    List<OptionReply> optionReplies() throws IOException {
        List<OptionReply> out = new ArrayList<>();
        while (true) {
            OptionReply r = optionReply();
            out.add(r);
            if (r.type() == REP_ACK || r.type() < 0) {
                return out;
            }
        }
    }

    NbdTestClient structuredReplies() throws IOException {
        option(OPT_STRUCTURED_REPLY, new byte[0]);
        OptionReply r = optionReply();
        if (r.type() != REP_ACK) {
            throw new IOException("structured replies refused: " + r.text());
        }
        structured = true;
        return this;
    }

    static byte[] nameAndQueries(String export, String... queries) {
        byte[] n = export.getBytes(StandardCharsets.UTF_8);
        int len = 8 + n.length;
        for (String q : queries) {
            len += 4 + q.getBytes(StandardCharsets.UTF_8).length;
        }
        ByteBuffer b = ByteBuffer.allocate(len).putInt(n.length).put(n).putInt(queries.length);
        for (String q : queries) {
            byte[] qb = q.getBytes(StandardCharsets.UTF_8);
            b.putInt(qb.length).put(qb);
        }
        return b.array();
    }

    List<OptionReply> setMetaContext(String export, String... queries) throws IOException {
        option(OPT_SET_META_CONTEXT, nameAndQueries(export, queries));
        return optionReplies();
    }

    /** NBD_OPT_GO with no info requests; the error reply, or null once in transmission. */
    OptionReply go(String export) throws IOException {
        byte[] n = export.getBytes(StandardCharsets.UTF_8);
        option(
                OPT_GO,
                ByteBuffer.allocate(6 + n.length)
                        .putInt(n.length)
                        .put(n)
                        .putShort((short) 0)
                        .array());
        for (OptionReply r : optionReplies()) {
            if (r.type() < 0) {
                return r;
            }
            ByteBuffer d = ByteBuffer.wrap(r.data());
            if (r.type() == REP_INFO && d.getShort() == INFO_EXPORT) {
                size = d.getLong();
                flags = Short.toUnsignedInt(d.getShort());
            }
        }
        return null;
    }

    void request(int flags, int type, long handle, long offset, long length) throws IOException {
        send(ByteBuffer.allocate(REQUEST_HEADER)
                .putInt(REQUEST_MAGIC)
                .putShort((short) flags)
                .putShort((short) type)
                .putLong(handle)
                .putLong(offset)
                .putInt((int) length)
                .flip());
    }

    /** One reply chunk; a simple reply's data (for reads) must be read by the caller. */
    Chunk chunk() throws IOException {
        int magic = read(4).getInt();
        if (magic == SIMPLE_REPLY_MAGIC) {
            ByteBuffer b = read(12);
            int error = b.getInt();
            return new Chunk(0, -1, b.getLong(), error, new byte[0]);
        }
        if (magic != STRUCTURED_REPLY_MAGIC) {
            throw new IOException("bad reply magic " + Integer.toHexString(magic));
        }
        ByteBuffer h = read(16);
        int f = Short.toUnsignedInt(h.getShort());
        int t = Short.toUnsignedInt(h.getShort());
        long handle = h.getLong();
        int len = h.getInt();
        return new Chunk(f, t, handle, 0, bytes(len));
    }

    /** Every chunk of one reply. */
    List<Chunk> reply() throws IOException {
        List<Chunk> out = new ArrayList<>();
        while (true) {
            Chunk c = chunk();
            out.add(c);
            if (c.done()) {
                return out;
            }
        }
    }

    void send(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            channel.write(b);
        }
    }

    void send(byte[] bytes) throws IOException {
        send(ByteBuffer.wrap(bytes));
    }

    ByteBuffer read(int n) throws IOException {
        return ByteBuffer.wrap(bytes(n));
    }

    byte[] bytes(int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (channel.read(b) < 0) {
                throw new EOFException("server closed the connection");
            }
        }
        return b.array();
    }

    /** Whether the server has closed the connection (reads EOF or a reset within the timeout). */
    boolean closedByServer() throws IOException {
        ByteBuffer b = ByteBuffer.allocate(1);
        try {
            return channel.read(b) < 0;
        } catch (IOException e) {
            return true;
        }
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
