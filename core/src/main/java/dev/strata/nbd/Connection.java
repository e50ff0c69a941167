package dev.strata.nbd;

import dev.strata.block.BufferPool;
import java.io.EOFException;
import java.io.IOException;
import java.nio.channels.ByteChannel;
import java.nio.channels.ClosedChannelException;
import java.time.Duration;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One NBD client, from greeting to disconnect, on its own platform thread (see {@link Transmission}
 * for why not a virtual one).
 *
 * <p>Concurrency: the connection's thread is the only one that reads its socket, and writes it but
 * for the replies of flushes, which the flush threads send under the reply lock; other threads
 * only {@link #close} it (server stop, {@code block-export-del} in hard mode, the
 * handshake deadline), which makes the thread's blocked read fail and the thread end. A request
 * being served when that happens completes on the node first, so nothing is left half-tracked.
 */
final class Connection implements Runnable {
    private static final Logger LOG = LoggerFactory.getLogger(Connection.class);

    /** How long a client may take to choose an export (QEMU's default handshake limit). */
    static final Duration HANDSHAKE_LIMIT = Duration.ofSeconds(10);

    private final ByteChannel channel;
    private final Handshake.Exports exports;
    private final BufferPool buffers;
    private final Runnable onEnd;
    private volatile boolean handshakeDone;
    private volatile Export export;

    Connection(ByteChannel channel, Handshake.Exports exports, BufferPool buffers, Runnable onEnd) {
        this.channel = channel;
        this.exports = exports;
        this.buffers = buffers;
        this.onEnd = onEnd;
    }

    /** A connection over any byte channel, ended when the stream ends (tests, fuzzing). */
    static Connection over(ByteChannel channel, Handshake.Exports exports) {
        return new Connection(channel, exports, new BufferPool(16, 64L << 20), () -> {});
    }

    @Override
    public void run() {
        Thread deadline = Thread.ofVirtual().start(() -> {
            try {
                Thread.sleep(HANDSHAKE_LIMIT);
                if (!handshakeDone) {
                    LOG.debug("NBD client took longer than {} to negotiate; dropped", HANDSHAKE_LIMIT);
                    close();
                }
            } catch (InterruptedException e) {
                // handshake finished in time
            }
        });
        Wire wire = new Wire(channel);
        try {
            Handshake.Agreed agreed = new Handshake(wire, exports).run();
            handshakeDone = true;
            deadline.interrupt();
            if (agreed == null) {
                return;
            }
            Export e = agreed.export();
            export = e;
            e.attach(this);
            try {
                if (e.shuttingDown()) {
                    return;
                }
                new Transmission(wire, agreed, buffers).run();
            } finally {
                e.detach(this);
            }
        } catch (EOFException | ClosedChannelException e) {
            LOG.debug("NBD client gone: {}", e.toString());
        } catch (IOException e) {
            LOG.debug("NBD connection ended: {}", e.toString());
        } catch (RuntimeException e) {
            LOG.warn("NBD connection failed", e);
        } finally {
            deadline.interrupt();
            close();
            onEnd.run();
        }
    }

    /** The export the client chose, or null during the handshake. */
    Export export() {
        return export;
    }

    /** Closes the socket; the connection's thread ends at its next read or write. */
    void close() {
        try {
            channel.close();
        } catch (IOException e) {
            LOG.debug("closing NBD connection: {}", e.toString());
        }
    }
}
