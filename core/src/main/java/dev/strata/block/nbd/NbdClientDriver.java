package dev.strata.block.nbd;

import static dev.strata.block.nbd.NbdProtocol.CMD_DISC;
import static dev.strata.block.nbd.NbdProtocol.CMD_FLAG_NO_HOLE;
import static dev.strata.block.nbd.NbdProtocol.CMD_FLUSH;
import static dev.strata.block.nbd.NbdProtocol.CMD_READ;
import static dev.strata.block.nbd.NbdProtocol.CMD_TRIM;
import static dev.strata.block.nbd.NbdProtocol.CMD_WRITE;
import static dev.strata.block.nbd.NbdProtocol.CMD_WRITE_ZEROES;
import static dev.strata.block.nbd.NbdProtocol.FLAG_FIXED_NEWSTYLE;
import static dev.strata.block.nbd.NbdProtocol.FLAG_NO_ZEROES;
import static dev.strata.block.nbd.NbdProtocol.FLAG_READ_ONLY;
import static dev.strata.block.nbd.NbdProtocol.FLAG_SEND_FLUSH;
import static dev.strata.block.nbd.NbdProtocol.FLAG_SEND_TRIM;
import static dev.strata.block.nbd.NbdProtocol.FLAG_SEND_WRITE_ZEROES;
import static dev.strata.block.nbd.NbdProtocol.IHAVEOPT;
import static dev.strata.block.nbd.NbdProtocol.INFO_EXPORT;
import static dev.strata.block.nbd.NbdProtocol.NBDMAGIC;
import static dev.strata.block.nbd.NbdProtocol.OPTION_REPLY_MAGIC;
import static dev.strata.block.nbd.NbdProtocol.OPT_GO;
import static dev.strata.block.nbd.NbdProtocol.REP_ACK;
import static dev.strata.block.nbd.NbdProtocol.REP_INFO;
import static dev.strata.block.nbd.NbdProtocol.REQUEST_MAGIC;
import static dev.strata.block.nbd.NbdProtocol.SIMPLE_REPLY_MAGIC;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.OpenContext;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;

/**
 * QEMU's {@code nbd} protocol driver: another NBD server's export as a node, so that Strata can
 * read and write (and back up) a disk served elsewhere. Options as QEMU's BlockdevOptionsNbd:
 * {@code server} ({@code type: unix, path} or {@code type: inet, host, port}), {@code export};
 * {@code tls-creds} is refused, {@code reconnect-delay} and {@code open-timeout} are accepted.
 *
 * <p>Fixed newstyle negotiation with NBD_OPT_GO; simple replies, one request at a time on the
 * connection (a lock orders them). Without structured replies the server cannot describe holes,
 * so block status reports the whole export as data, as QEMU's client does against such a server.
 */
public final class NbdClientDriver implements BlockDriver {
    /** The largest request sent: servers must accept 32 MiB (QEMU's limit too). */
    private static final int MAX_REQUEST = 32 << 20;
    /** Bounds an option reply's length, so a hostile server cannot make the client allocate without bound. */
    private static final int MAX_OPTION_REPLY = 64 << 10;

    private final SocketChannel channel;
    private final long size;
    private final int flags;
    private final ReentrantLock lock = new ReentrantLock();
    // guarded by lock
    private long nextHandle = 1;
    private boolean closed;

    private NbdClientDriver(SocketChannel channel, long size, int flags) {
        this.channel = channel;
        this.size = size;
        this.flags = flags;
    }

    public static NbdClientDriver open(BlockOptions options, OpenContext context) throws IOException {
        BlockOptions server = options.child("server")
                .orElseThrow(() -> new BlockException("Parameter 'server' is missing", BlockException.EINVAL));
        String export = options.string("export").orElse("");
        if (options.get("tls-creds") != null) {
            throw new BlockException("Strata's NBD client does not support TLS", BlockException.ENOTSUP);
        }
        options.get("tls-hostname");
        options.get("reconnect-delay");
        options.get("open-timeout");
        options.get("x-dirty-bitmap");
        SocketAddress address;
        String where;
        String type = server.requireString("type");
        switch (type) {
            case "unix" -> {
                String path = server.requireString("path");
                address = UnixDomainSocketAddress.of(path);
                where = path;
            }
            case "inet" -> {
                String host = server.requireString("host");
                String port = server.string("port").orElse("10809");
                address = new InetSocketAddress(host, Integer.parseInt(port));
                where = host + ":" + port;
            }
            default ->
                throw new BlockException("Unsupported NBD server address type '" + type + "'", BlockException.EINVAL);
        }
        SocketChannel ch;
        try {
            ch = address instanceof UnixDomainSocketAddress
                    ? SocketChannel.open(StandardProtocolFamily.UNIX)
                    : SocketChannel.open();
            ch.connect(address);
        } catch (IOException e) {
            String reason = e.getMessage() == null ? e.toString() : e.getMessage();
            throw new BlockException("Failed to connect to '" + where + "': " + reason, BlockException.EIO);
        }
        try {
            long[] sizeAndFlags = negotiate(ch, export);
            return new NbdClientDriver(ch, sizeAndFlags[0], (int) sizeAndFlags[1]);
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    /** Fixed newstyle negotiation ending in NBD_OPT_GO; returns the export's size and flags. */
    private static long[] negotiate(SocketChannel ch, String export) throws IOException {
        ByteBuffer hello = readFully(ch, 18);
        if (hello.getLong(0) != NBDMAGIC || hello.getLong(8) != IHAVEOPT) {
            throw new BlockException(
                    "Server is not an NBD server speaking the newstyle protocol", BlockException.EINVAL);
        }
        int serverFlags = hello.getShort(16) & 0xffff;
        if ((serverFlags & FLAG_FIXED_NEWSTYLE) == 0) {
            throw new BlockException("Server does not support fixed newstyle negotiation", BlockException.EINVAL);
        }
        int clientFlags = FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES);
        writeFully(ch, ByteBuffer.allocate(4).putInt(0, clientFlags));
        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        ByteBuffer go = ByteBuffer.allocate(16 + 4 + name.length + 2);
        go.putLong(IHAVEOPT)
                .putInt(OPT_GO)
                .putInt(4 + name.length + 2)
                .putInt(name.length)
                .put(name)
                .putShort((short) 0);
        writeFully(ch, go.flip());
        long size = -1;
        int flags = 0;
        while (true) {
            ByteBuffer head = readFully(ch, 20);
            if (head.getLong(0) != OPTION_REPLY_MAGIC || head.getInt(8) != OPT_GO) {
                throw new BlockException("Unexpected reply from the NBD server", BlockException.EINVAL);
            }
            int replyType = head.getInt(12);
            long len = Integer.toUnsignedLong(head.getInt(16));
            if (len > MAX_OPTION_REPLY) {
                throw new BlockException("NBD option reply too long: " + len + " bytes", BlockException.EINVAL);
            }
            ByteBuffer data = readFully(ch, (int) len);
            if (replyType == REP_ACK) {
                break;
            }
            if (replyType == REP_INFO) {
                if (len >= 12 && (data.getShort(0) & 0xffff) == INFO_EXPORT) {
                    size = data.getLong(2);
                    flags = data.getShort(10) & 0xffff;
                }
                continue;
            }
            if (replyType < 0) {
                String message = new String(data.array(), StandardCharsets.UTF_8);
                throw new BlockException(
                        message.isEmpty() ? "Requested export not available" : message, BlockException.EINVAL);
            }
            // other replies (NBD_REP_SERVER and the like) carry nothing this client needs
        }
        if (size < 0) {
            throw new BlockException("NBD server sent no export size", BlockException.EINVAL);
        }
        return new long[] {size, flags};
    }

    @Override
    public String format() {
        return "nbd";
    }

    @Override
    public long length() {
        return size;
    }

    @Override
    public boolean readOnly() {
        return (flags & FLAG_READ_ONLY) != 0;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        while (dst.hasRemaining()) {
            int n = Math.min(dst.remaining(), MAX_REQUEST);
            ByteBuffer part = dst.slice(dst.position(), n);
            request(CMD_READ, 0, offset, n, null, part);
            dst.position(dst.position() + n);
            offset += n;
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        while (src.hasRemaining()) {
            int n = Math.min(src.remaining(), MAX_REQUEST);
            ByteBuffer part = src.slice(src.position(), n);
            request(CMD_WRITE, 0, offset, n, part, null);
            src.position(src.position() + n);
            offset += n;
        }
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        if ((flags & FLAG_SEND_WRITE_ZEROES) == 0) {
            ByteBuffer zeros = ByteBuffer.allocate((int) Math.min(length, 1 << 20));
            for (long pos = offset; pos < offset + length; ) {
                int n = (int) Math.min(zeros.capacity(), offset + length - pos);
                write(pos, zeros.clear().limit(n));
                pos += n;
            }
            return;
        }
        requests(CMD_WRITE_ZEROES, mayUnmap ? 0 : CMD_FLAG_NO_HOLE, offset, length);
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        if ((flags & FLAG_SEND_TRIM) == 0) {
            return;
        }
        requests(CMD_TRIM, 0, offset, length);
    }

    /** A request without data over {@code [offset, offset+length)}, cut at the largest request size. */
    private void requests(int type, int cmdFlags, long offset, long length) throws IOException {
        for (long pos = offset; pos < offset + length; ) {
            int n = (int) Math.min(MAX_REQUEST, offset + length - pos);
            request(type, cmdFlags, pos, n, null, null);
            pos += n;
        }
    }

    @Override
    public void flush() throws IOException {
        if ((flags & FLAG_SEND_FLUSH) != 0) {
            request(CMD_FLUSH, 0, 0, 0, null, null);
        }
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) {
        return List.of(Extent.of(offset, length, Extent.Kind.DATA));
    }

    @Override
    public Map<String, BlockNode> children() {
        return Map.of();
    }

    /** One request and its simple reply; {@code out} is sent after the header, {@code in} filled from the reply. */
    private void request(int type, int cmdFlags, long offset, int length, ByteBuffer out, ByteBuffer in)
            throws IOException {
        lock.lock();
        try {
            if (closed) {
                throw new BlockException("NBD connection closed", BlockException.EIO);
            }
            long handle = nextHandle++;
            ByteBuffer header = ByteBuffer.allocate(28)
                    .putInt(REQUEST_MAGIC)
                    .putShort((short) cmdFlags)
                    .putShort((short) type)
                    .putLong(handle)
                    .putLong(offset)
                    .putInt(length)
                    .flip();
            writeFully(channel, header);
            if (out != null) {
                writeFully(channel, out.duplicate());
            }
            ByteBuffer reply = readFully(channel, 16);
            if (reply.getInt(0) != SIMPLE_REPLY_MAGIC || reply.getLong(8) != handle) {
                closed = true;
                throw new BlockException("Invalid reply from the NBD server", BlockException.EIO);
            }
            int error = reply.getInt(4);
            if (error != 0) {
                // a read's data does not follow an error reply
                throw new BlockException(BlockException.strerror(error), error);
            }
            if (in != null) {
                ByteBuffer dst = in.duplicate();
                while (dst.hasRemaining()) {
                    if (channel.read(dst) < 0) {
                        closed = true;
                        throw new BlockException("NBD server closed the connection", BlockException.EIO);
                    }
                }
            }
        } finally {
            lock.unlock();
        }
    }

    private static ByteBuffer readFully(SocketChannel ch, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        while (b.hasRemaining()) {
            if (ch.read(b) < 0) {
                throw new BlockException("NBD server closed the connection", BlockException.EIO);
            }
        }
        return b.flip();
    }

    private static void writeFully(SocketChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    @Override
    public void close() throws IOException {
        lock.lock();
        try {
            if (!closed) {
                closed = true;
                try {
                    writeFully(
                            channel,
                            ByteBuffer.allocate(28)
                                    .putInt(REQUEST_MAGIC)
                                    .putShort((short) 0)
                                    .putShort((short) CMD_DISC)
                                    .putLong(nextHandle++)
                                    .putLong(0)
                                    .putInt(0)
                                    .flip());
                } catch (IOException e) {
                    // the server is gone already: nothing to say goodbye to
                }
            }
            channel.close();
        } finally {
            lock.unlock();
        }
    }
}
