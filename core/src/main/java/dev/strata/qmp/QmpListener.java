package dev.strata.qmp;

import dev.strata.net.PrivateUnixSocket;
import java.io.IOException;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A UNIX socket that serves QMP: each accepted connection becomes a {@link QmpSession} on its own
 * virtual thread, any number at once (QEMU's socket chardev serves one client at a time).
 *
 * <p>The socket is never reachable with looser permissions than 0600 ({@link PrivateUnixSocket}).
 * The socket file is removed on close.
 */
public final class QmpListener implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(QmpListener.class);

    private final Qmp qmp;
    private final Path path;
    private final ServerSocketChannel server;
    private final boolean pretty;
    private volatile boolean closed;
    private final java.util.concurrent.CountDownLatch firstClient = new java.util.concurrent.CountDownLatch(1);

    private QmpListener(Qmp qmp, Path path, ServerSocketChannel server, boolean pretty) {
        this.qmp = qmp;
        this.path = path;
        this.server = server;
        this.pretty = pretty;
    }

    static QmpListener open(Qmp qmp, Path socket, boolean pretty) throws IOException {
        Path target = socket.toAbsolutePath();
        if (target.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8).length > PrivateUnixSocket.MAX_PATH) {
            throw new IOException("UNIX socket path '" + socket + "' is too long");
        }
        ServerSocketChannel server = PrivateUnixSocket.bind(target);
        QmpListener l = new QmpListener(qmp, target, server, pretty);
        Thread.ofVirtual().name("qmp-accept " + target).start(l::acceptLoop);
        return l;
    }

    public Path path() {
        return path;
    }

    private void acceptLoop() {
        while (!closed) {
            SocketChannel client;
            try {
                client = server.accept();
            } catch (ClosedChannelException e) {
                return;
            } catch (IOException e) {
                if (!closed) {
                    LOG.warn("QMP accept on {} failed: {}", path, e.toString());
                }
                return;
            }
            QmpSession session = new QmpSession(qmp, client, pretty);
            Thread.ofVirtual().name("qmp-session").start(session::run);
            firstClient.countDown();
        }
    }

    /** Waits for one client to connect before returning (QEMU's {@code wait=on}); that client is served. */
    public void awaitFirstClient() throws InterruptedException {
        firstClient.await();
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        firstClient.countDown();
        try {
            server.close();
        } catch (IOException e) {
            LOG.debug("closing {}: {}", path, e.toString());
        }
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            LOG.debug("removing {}: {}", path, e.toString());
        }
    }
}
