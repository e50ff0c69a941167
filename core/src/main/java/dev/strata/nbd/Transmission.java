package dev.strata.nbd;

import static dev.strata.nbd.NbdProtocol.*;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * The transmission phase of one connection: requests are read, checked and served one at a time,
 * each answered before the next is read (replies therefore come in request order, which every
 * client accepts).
 *
 * <p>Invariants: a write, zero-write or trim reaches {@link BlockNode}, which marks every
 * recording bitmap before it returns, and only then is the reply sent: NBD never acknowledges an
 * untracked write (ARCHITECTURE.md invariant 1). With FUA the node is flushed before the reply.
 * A request the server refuses (out of range, read-only export, bad flags, unknown command) gets
 * an error reply and the connection carries on, its payload having been read; only a broken
 * stream (bad magic) or a WRITE too large to read ends it, as in QEMU.
 */
final class Transmission {
    /** Most runs in one BLOCK_STATUS chunk; the client continues from where a reply ends. */
    static final int MAX_EXTENTS = 1 << 16;

    private final Wire wire;
    private final Export export;
    private final BlockNode node;
    private final boolean structured;
    private final List<MetaContext> contexts;

    Transmission(Wire wire, Handshake.Agreed agreed) {
        this.wire = wire;
        this.export = agreed.export();
        this.node = export.node();
        this.structured = agreed.structured();
        this.contexts = agreed.contexts();
    }

    /** Serves requests until the client sends DISC or the stream ends. */
    void run() throws IOException {
        while (true) {
            ByteBuffer h = wire.read(REQUEST_HEADER);
            int magic = h.getInt();
            int flags = Short.toUnsignedInt(h.getShort());
            int type = Short.toUnsignedInt(h.getShort());
            long handle = h.getLong();
            long offset = h.getLong();
            long length = Integer.toUnsignedLong(h.getInt());
            if (magic != REQUEST_MAGIC) {
                throw new Handshake.Violation("invalid request magic 0x" + Integer.toHexString(magic));
            }
            if (type == CMD_DISC) {
                return;
            }
            if ((type == CMD_READ || type == CMD_WRITE || type == CMD_CACHE) && length > MAX_BUFFER) {
                // the space before ')' is qemu-storage-daemon 7.2's
                error(handle, EINVAL, "len (" + length + " ) is larger than max len (" + MAX_BUFFER + ")");
                if (type == CMD_WRITE) {
                    // its payload cannot be skipped safely: the stream is out of step
                    throw new Handshake.Violation("Request handling failed in intermediate state");
                }
                continue;
            }
            ByteBuffer payload = null;
            if (type == CMD_WRITE) {
                payload = wire.data((int) length);
                wire.readFully(payload);
                payload.flip();
            }
            String refusal = check(type, flags, offset, length);
            if (refusal != null) {
                // qemu-storage-daemon 7.2 answers every refused request with EINVAL (a read-only
                // export included, where the protocol suggests EPERM); clients only see "failed"
                error(handle, EINVAL, refusal);
                continue;
            }
            serve(type, flags, handle, offset, length, payload);
        }
    }

    /** QEMU's checks, in QEMU's order; the refusal's text, or null. */
    private String check(int type, int flags, long offset, long length) {
        if (!export.writable() && (type == CMD_WRITE || type == CMD_WRITE_ZEROES || type == CMD_TRIM)) {
            return "Export is read-only";
        }
        long size = export.size();
        if (Long.compareUnsigned(offset, size) > 0 || length > size - offset) {
            return "operation past EOF; From: " + Long.toUnsignedString(offset) + ", Len: " + length + ", Size: "
                    + size;
        }
        int valid = CMD_FLAG_FUA;
        if (type == CMD_READ && structured) {
            valid |= CMD_FLAG_DF;
        } else if (type == CMD_WRITE_ZEROES) {
            valid |= CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO;
        } else if (type == CMD_BLOCK_STATUS) {
            valid |= CMD_FLAG_REQ_ONE;
        }
        if ((flags & ~valid) != 0) {
            return "unsupported flags for command " + commandName(type) + " (got 0x" + Integer.toHexString(flags) + ")";
        }
        return null;
    }

    private void serve(int type, int flags, long handle, long offset, long length, ByteBuffer payload)
            throws IOException {
        boolean fua = (flags & CMD_FLAG_FUA) != 0 || export.writethrough();
        try {
            switch (type) {
                case CMD_READ -> {
                    read(flags, handle, offset, (int) length);
                    return;
                }
                case CMD_BLOCK_STATUS -> {
                    blockStatus(flags, handle, offset, length);
                    return;
                }
                case CMD_WRITE -> {
                    node.write(offset, payload);
                    if (fua) {
                        node.flush();
                    }
                }
                case CMD_WRITE_ZEROES -> {
                    node.writeZeroes(offset, length, (flags & CMD_FLAG_NO_HOLE) == 0);
                    if (fua) {
                        node.flush();
                    }
                }
                case CMD_TRIM -> {
                    node.discard(offset, length);
                    if (fua) {
                        node.flush();
                    }
                }
                case CMD_FLUSH -> node.flush();
                case CMD_CACHE -> {
                    // the page cache already holds what the file reads; nothing to prefetch
                }
                default -> {
                    error(handle, EINVAL, "invalid request type (" + type + ") received");
                    return;
                }
            }
        } catch (IOException e) {
            error(handle, errorOf(e), e.getMessage() == null ? e.toString() : e.getMessage());
            return;
        }
        done(handle);
    }

    private static int errorOf(IOException e) {
        return e instanceof BlockException b ? NbdProtocol.errorOf(b.errno()) : EIO;
    }

    private void read(int flags, long handle, long offset, int length) throws IOException {
        if (!structured) {
            ByteBuffer data = wire.data(length);
            try {
                node.read(offset, data);
            } catch (IOException e) {
                error(handle, errorOf(e), e.getMessage());
                return;
            }
            wire.send(simpleHeader(handle, 0), data.flip());
            return;
        }
        if (length == 0) {
            wire.send(
                    chunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_NONE, handle, 0, 0).flip());
            return;
        }
        List<Extent> extents;
        try {
            extents = (flags & CMD_FLAG_DF) != 0
                    ? List.of(Extent.of(offset, length, Extent.Kind.DATA))
                    : node.blockStatus(offset, length);
        } catch (IOException e) {
            error(handle, errorOf(e), e.getMessage());
            return;
        }
        for (int i = 0; i < extents.size(); i++) {
            Extent e = extents.get(i);
            int chunkFlags = i == extents.size() - 1 ? REPLY_FLAG_DONE : 0;
            if (e.isZero()) {
                ByteBuffer out = chunkHeader(chunkFlags, REPLY_TYPE_OFFSET_HOLE, handle, 12, 12);
                out.putLong(e.offset()).putInt((int) e.length());
                wire.send(out.flip());
                continue;
            }
            ByteBuffer data = wire.data((int) e.length());
            try {
                node.read(e.offset(), data);
            } catch (IOException x) {
                error(handle, errorOf(x), x.getMessage());
                return;
            }
            ByteBuffer out = chunkHeader(chunkFlags, REPLY_TYPE_OFFSET_DATA, handle, 8 + (int) e.length(), 8);
            out.putLong(e.offset());
            wire.send(out.flip(), data.flip());
        }
    }

    private void blockStatus(int flags, long handle, long offset, long length) throws IOException {
        if (!structured || contexts.isEmpty()) {
            error(handle, EINVAL, "CMD_BLOCK_STATUS not negotiated");
            return;
        }
        if (length == 0) {
            error(handle, EINVAL, "need non-zero length");
            return;
        }
        int max = (flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : MAX_EXTENTS;
        ExtentList[] lists = new ExtentList[contexts.size()];
        try {
            for (int i = 0; i < lists.length; i++) {
                lists[i] = new ExtentList(max);
                contexts.get(i).extents(offset, length, lists[i]);
            }
        } catch (IOException e) {
            error(handle, errorOf(e), e.getMessage());
            return;
        }
        for (int i = 0; i < lists.length; i++) {
            int bytes = 4 + 8 * lists[i].size();
            int chunkFlags = i == lists.length - 1 ? REPLY_FLAG_DONE : 0;
            ByteBuffer out = chunkHeader(chunkFlags, REPLY_TYPE_BLOCK_STATUS, handle, bytes, bytes);
            out.putInt(contexts.get(i).id());
            lists[i].writeTo(out);
            wire.send(out.flip());
        }
    }

    private ByteBuffer simpleHeader(long handle, int error) {
        ByteBuffer out = wire.out(16);
        return out.putInt(SIMPLE_REPLY_MAGIC).putInt(error).putLong(handle).flip();
    }

    /** A structured chunk header in the output buffer, with room for {@code room} more bytes. */
    private ByteBuffer chunkHeader(int flags, int type, long handle, int payloadLength, int room) {
        ByteBuffer out = wire.out(20 + room);
        return out.putInt(STRUCTURED_REPLY_MAGIC)
                .putShort((short) flags)
                .putShort((short) type)
                .putLong(handle)
                .putInt(payloadLength);
    }

    /** Success without data: a simple reply even with structured replies, as QEMU sends it. */
    private void done(long handle) throws IOException {
        wire.send(simpleHeader(handle, 0));
    }

    private void error(long handle, int error, String message) throws IOException {
        if (!structured) {
            wire.send(simpleHeader(handle, error));
            return;
        }
        byte[] msg = (message == null ? "" : message).getBytes(StandardCharsets.UTF_8);
        int len = Math.min(msg.length, MAX_STRING);
        ByteBuffer out = chunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, handle, 6 + len, 6 + len);
        out.putInt(error).putShort((short) len).put(msg, 0, len);
        wire.send(out.flip());
    }
}
