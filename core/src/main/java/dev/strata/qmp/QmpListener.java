package dev.strata.qmp;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.ThreadLocalRandom;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A UNIX socket that serves QMP: each accepted connection becomes a {@link QmpSession} on its own
 * virtual thread, any number at once (QEMU's socket chardev serves one client at a time).
 *
 * <p>The socket is never reachable with looser permissions than 0600: it is bound inside a fresh
 * directory of mode 0700 next to the requested path, restricted to 0600, and only then renamed
 * into place (rename is atomic, and a bound socket keeps working under its new name). A stale
 * file at the path is replaced, as QEMU does. The socket file is removed on close.
 */
public final class QmpListener implements AutoCloseable {
    /** sun_path holds 108 bytes including the terminating NUL. */
    private static final int MAX_SOCKET_PATH = 107;

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
        if (target.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8).length > MAX_SOCKET_PATH) {
            throw new IOException("UNIX socket path '" + socket + "' is too long");
        }
        ServerSocketChannel server = bindPrivately(target);
        QmpListener l = new QmpListener(qmp, target, server, pretty);
        Thread.ofVirtual().name("qmp-accept " + target).start(l::acceptLoop);
        return l;
    }

    private static ServerSocketChannel bindPrivately(Path target) throws IOException {
        Path parent = target.getParent();
        Path dir = parent.resolve(
                ".strata-" + Long.toString(ThreadLocalRandom.current().nextLong() >>> 1, 36));
        Path staging = dir.resolve("s");
        if (staging.toString().length() > MAX_SOCKET_PATH) {
            // the staging name does not fit: bind in place and restrict at once (a short window)
            Files.deleteIfExists(target);
            ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            server.bind(UnixDomainSocketAddress.of(target));
            Files.setPosixFilePermissions(target, PosixFilePermissions.fromString("rw-------"));
            return server;
        }
        Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            server.bind(UnixDomainSocketAddress.of(staging));
            Files.setPosixFilePermissions(staging, PosixFilePermissions.fromString("rw-------"));
            Files.move(staging, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            return server;
        } catch (IOException | RuntimeException e) {
            server.close();
            Files.deleteIfExists(staging);
            throw e;
        } finally {
            Files.deleteIfExists(dir);
        }
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
