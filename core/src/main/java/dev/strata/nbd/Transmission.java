package dev.strata.nbd;

import static dev.strata.block.nbd.NbdProtocol.*;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.BufferPool;
import dev.strata.block.Extent;
import dev.strata.block.HostCopy;
import dev.strata.block.nbd.NbdProtocol;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;

/**
 * The transmission phase of one connection: the connection's thread reads and checks requests
 * (and a WRITE's payload) in order and serves each itself, except FLUSH, which waits for the disk
 * and so is served on a pooled thread (up to {@link #MAX_IN_FLIGHT} requests of a connection at
 * once, as in QEMU) while the requests behind it go on. Replies go out as requests finish
 * ({@link Replies}); clients match them by handle.
 *
 * <p>Why in order: a read or write that the page cache serves takes microseconds, and handing it
 * to a thread of its own cost more than serving it (a thread start, a wake-up of a carrier, the
 * socket's poller on every reply: nbdcopy of 2 GiB took 0.8-1.0 s and 0.7-0.9 s of the server's
 * CPU that way, 0.46-0.55 s and 0.23-0.27 s in order on a platform thread that blocks in the
 * kernel). Clients that want parallel I/O open several connections, as nbdcopy does where the
 * export advertises multi-conn.
 *
 * <p>Invariants: a write, zero-write or trim reaches {@link BlockNode}, which marks every recording
 * bitmap before it returns, and only then is the reply sent: NBD never acknowledges an untracked
 * write (docs/architecture.md invariant 1). With FUA, or on a writethrough export, the node is
 * flushed before the reply. A FLUSH covers every write replied to before it arrived, since those
 * were served before it was read. A request the server refuses gets an error reply and the
 * connection carries on, its payload having been read; only a broken stream (bad magic) or a WRITE
 * too large to read ends it, as in QEMU. {@link #run} returns only when no request of the
 * connection is in flight any more, so whoever waits for the connection's thread (export removal,
 * server stop) knows the node is left alone.
 *
 * <p>Concurrency: the connection's thread is the only reader of the socket; {@code slots} bounds
 * the requests (and so the buffers) in flight; a reply that cannot be sent closes the channel,
 * which ends the reader too. Flushes run on pooled platform threads, like the connection's, so
 * that no virtual thread turns the socket non-blocking under the connection's thread.
 */
final class Transmission {
    /** Most runs in one BLOCK_STATUS chunk; the client continues from where a reply ends. */
    static final int MAX_EXTENTS = 1 << 16;

    /**
     * Requests of one connection served at once (QEMU's MAX_NBD_REQUESTS): the one the connection's
     * thread serves and flushes on pooled threads; with 1 ({@code -Dstrata.nbd.max-in-flight=1})
     * the connection's thread serves flushes too.
     */
    static final int MAX_IN_FLIGHT = Math.max(1, Integer.getInteger("strata.nbd.max-in-flight", 16));

    private final Wire wire;
    private final Export export;
    private final BlockNode node;
    private final boolean structured;
    private final List<MetaContext> contexts;
    private final Replies replies;
    private final BufferPool buffers;
    private final Semaphore slots = new Semaphore(MAX_IN_FLIGHT);

    /**
     * The threads flushes run on, shared by every connection and kept for a minute when idle: a
     * guest that flushes after every write would otherwise pay a thread start each time (1,000
     * writes each followed by a flush, from qemu-io: 0.57-0.77 s with a thread started per flush,
     * 0.35-0.57 s pooled, qemu-storage-daemon 0.25-0.42 s). Platform threads, so that no virtual
     * thread turns a client's socket non-blocking.
     */
    private static final ExecutorService FLUSHERS = Executors.newCachedThreadPool(
            Thread.ofPlatform().daemon().name("nbd-flush-", 0).factory());

    Transmission(Wire wire, Handshake.Agreed agreed, BufferPool buffers) {
        this.wire = wire;
        this.buffers = buffers;
        this.export = agreed.export();
        this.node = export.node();
        this.structured = agreed.structured();
        this.contexts = agreed.contexts();
        this.replies = new Replies(wire, structured);
    }

    /** One request as read from the wire. */
    private record Request(int flags, int type, long handle, long offset, long length) {}

    /** Serves requests until the client sends DISC or the stream ends, then waits for those in flight. */
    void run() throws IOException {
        try {
            readRequests();
        } finally {
            slots.acquireUninterruptibly(MAX_IN_FLIGHT);
            slots.release(MAX_IN_FLIGHT);
        }
    }

    private void readRequests() throws IOException {
        while (true) {
            ByteBuffer h = wire.read(REQUEST_HEADER);
            int magic = h.getInt();
            Request r = new Request(
                    Short.toUnsignedInt(h.getShort()),
                    Short.toUnsignedInt(h.getShort()),
                    h.getLong(),
                    h.getLong(),
                    Integer.toUnsignedLong(h.getInt()));
            if (magic != REQUEST_MAGIC) {
                throw new Handshake.Violation("invalid request magic 0x" + Integer.toHexString(magic));
            }
            if (r.type() == CMD_DISC) {
                return;
            }
            if ((r.type() == CMD_READ || r.type() == CMD_WRITE || r.type() == CMD_CACHE) && r.length() > MAX_BUFFER) {
                // the space before ')' is qemu-storage-daemon 7.2's
                replies.error(
                        r.handle(), EINVAL, "len (" + r.length() + " ) is larger than max len (" + MAX_BUFFER + ")");
                if (r.type() == CMD_WRITE) {
                    // its payload cannot be skipped safely: the stream is out of step
                    throw new Handshake.Violation("Request handling failed in intermediate state");
                }
                continue;
            }
            slots.acquireUninterruptibly();
            ByteBuffer payload = null;
            boolean handedOver = false;
            try {
                if (r.type() == CMD_WRITE) {
                    payload = buffers.take((int) r.length());
                    wire.readFully(payload);
                    payload.flip();
                }
                String refusal = check(r);
                if (refusal != null) {
                    // qemu-storage-daemon 7.2 answers every refused request with EINVAL (a read-only
                    // export included, where the protocol suggests EPERM); clients only see "failed"
                    replies.error(r.handle(), EINVAL, refusal);
                    continue;
                }
                ByteBuffer data = payload;
                handedOver = true;
                if (r.type() == CMD_FLUSH && MAX_IN_FLIGHT > 1) {
                    FLUSHERS.execute(() -> serve(r, data));
                } else {
                    serve(r, data);
                }
            } finally {
                if (!handedOver) {
                    if (payload != null) {
                        buffers.give(payload);
                    }
                    slots.release();
                }
            }
        }
    }

    /** QEMU's checks, in QEMU's order; the refusal's text, or null. */
    private String check(Request r) {
        int type = r.type();
        if (!export.writable() && (type == CMD_WRITE || type == CMD_WRITE_ZEROES || type == CMD_TRIM)) {
            return "Export is read-only";
        }
        long size = export.size();
        if (Long.compareUnsigned(r.offset(), size) > 0 || r.length() > size - r.offset()) {
            return "operation past EOF; From: " + Long.toUnsignedString(r.offset()) + ", Len: " + r.length()
                    + ", Size: " + size;
        }
        int valid = CMD_FLAG_FUA;
        if (type == CMD_READ && structured) {
            valid |= CMD_FLAG_DF;
        } else if (type == CMD_WRITE_ZEROES) {
            valid |= CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO;
        } else if (type == CMD_BLOCK_STATUS) {
            valid |= CMD_FLAG_REQ_ONE;
        }
        if ((r.flags() & ~valid) != 0) {
            return "unsupported flags for command " + commandName(type) + " (got 0x" + Integer.toHexString(r.flags())
                    + ")";
        }
        return null;
    }

    /** Serves one request and frees its slot; a reply that cannot be sent ends the connection. */
    private void serve(Request r, ByteBuffer payload) {
        try {
            serveOrFail(r, payload);
        } catch (IOException | RuntimeException e) {
            try {
                wire.close();
            } catch (IOException ignored) {
                // the connection is going anyway
            }
        } finally {
            if (payload != null) {
                buffers.give(payload);
            }
            slots.release();
        }
    }

    private void serveOrFail(Request r, ByteBuffer payload) throws IOException {
        boolean fua = (r.flags() & CMD_FLAG_FUA) != 0 || export.writethrough();
        try {
            switch (r.type()) {
                case CMD_READ -> {
                    read(r);
                    return;
                }
                case CMD_BLOCK_STATUS -> {
                    blockStatus(r);
                    return;
                }
                case CMD_WRITE -> {
                    node.write(r.offset(), payload);
                    if (fua) {
                        node.flush();
                    }
                }
                case CMD_WRITE_ZEROES -> {
                    node.writeZeroes(r.offset(), r.length(), (r.flags() & CMD_FLAG_NO_HOLE) == 0);
                    if (fua) {
                        node.flush();
                    }
                }
                case CMD_TRIM -> {
                    node.discard(r.offset(), r.length());
                    if (fua) {
                        node.flush();
                    }
                }
                case CMD_FLUSH -> node.flush();
                case CMD_CACHE -> {
                    // the page cache already holds what the file reads; nothing to prefetch
                }
                default -> {
                    replies.error(r.handle(), EINVAL, "invalid request type (" + r.type() + ") received");
                    return;
                }
            }
        } catch (IOException e) {
            replies.error(r.handle(), errorOf(e), message(e));
            return;
        }
        replies.done(r.handle());
    }

    private static int errorOf(IOException e) {
        return e instanceof BlockException b ? NbdProtocol.errorOf(b.errno()) : EIO;
    }

    private static String message(IOException e) {
        return e.getMessage() == null ? e.toString() : e.getMessage();
    }

    private void read(Request r) throws IOException {
        int length = (int) r.length();
        if (!structured) {
            simpleRead(r, length);
            return;
        }
        if (length == 0) {
            replies.none(r.handle());
            return;
        }
        List<Extent> extents;
        try {
            extents = (r.flags() & CMD_FLAG_DF) != 0
                    ? List.of(Extent.of(r.offset(), length, Extent.Kind.DATA))
                    : node.blockStatus(r.offset(), length);
        } catch (IOException e) {
            replies.error(r.handle(), errorOf(e), message(e));
            return;
        }
        // taken only when some data cannot go straight from a host file
        ByteBuffer data = null;
        try {
            for (int i = 0; i < extents.size(); i++) {
                Extent e = extents.get(i);
                boolean last = i == extents.size() - 1;
                if (e.isZero()) {
                    replies.offsetHole(r.handle(), last, e.offset(), e.length());
                    continue;
                }
                long from = e.offset();
                try {
                    from = HostCopy.ENABLED ? sendFromHost(r.handle(), e, last) : from;
                    if (from == e.end()) {
                        continue;
                    }
                    if (data == null) {
                        data = buffers.take(length);
                    }
                    ByteBuffer slice = data.slice((int) (from - r.offset()), (int) (e.end() - from));
                    node.read(from, slice);
                    replies.offsetData(r.handle(), last, from, slice.flip());
                } catch (SendFailed x) {
                    throw (IOException) x.getCause();
                } catch (IOException x) {
                    replies.error(r.handle(), errorOf(x), message(x));
                    return;
                }
            }
        } finally {
            if (data != null) {
                buffers.give(data);
            }
        }
    }

    /** A read answered with a simple reply: the whole range through a buffer. */
    private void simpleRead(Request r, int length) throws IOException {
        ByteBuffer data = buffers.take(length);
        try {
            try {
                node.read(r.offset(), data);
            } catch (IOException e) {
                replies.error(r.handle(), errorOf(e), message(e));
                return;
            }
            replies.simpleData(r.handle(), data.flip());
        } finally {
            buffers.give(data);
        }
    }

    /**
     * Sends the runs of a data extent that lie plainly in a host file straight from it (sendfile),
     * one chunk each; returns where that stopped (the extent's end, or where the rest must be
     * read). A failed send is a {@link SendFailed}; other failures come before anything was sent.
     */
    private long sendFromHost(long handle, Extent e, boolean lastExtent) throws IOException {
        long pos = e.offset();
        while (pos < e.end()) {
            long at = pos;
            long n = node.withHostRun(at, e.end() - at, run -> {
                try {
                    replies.offsetData(handle, lastExtent && run.length() == e.end() - at, at, run);
                } catch (IOException x) {
                    throw new SendFailed(x);
                }
                return run.length();
            });
            if (n == 0) {
                break;
            }
            pos += n;
        }
        return pos;
    }

    /** A reply that failed part way: the connection ends, no error reply follows. */
    private static final class SendFailed extends IOException {
        private static final long serialVersionUID = 1L;

        SendFailed(IOException cause) {
            super(cause);
        }
    }

    private void blockStatus(Request r) throws IOException {
        if (!structured || contexts.isEmpty()) {
            replies.error(r.handle(), EINVAL, "CMD_BLOCK_STATUS not negotiated");
            return;
        }
        if (r.length() == 0) {
            replies.error(r.handle(), EINVAL, "need non-zero length");
            return;
        }
        int max = (r.flags() & CMD_FLAG_REQ_ONE) != 0 ? 1 : MAX_EXTENTS;
        ExtentList[] lists = new ExtentList[contexts.size()];
        try {
            for (int i = 0; i < lists.length; i++) {
                lists[i] = new ExtentList(max);
                contexts.get(i).extents(r.offset(), r.length(), lists[i]);
            }
        } catch (IOException e) {
            replies.error(r.handle(), errorOf(e), message(e));
            return;
        }
        for (int i = 0; i < lists.length; i++) {
            ByteBuffer out = buffers.take(8 * lists[i].size());
            try {
                lists[i].writeTo(out);
                replies.blockStatus(
                        r.handle(), i == lists.length - 1, contexts.get(i).id(), out.flip());
            } finally {
                buffers.give(out);
            }
        }
    }
}
