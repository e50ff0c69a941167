package dev.strata.net;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A listening UNIX socket that is never reachable with looser permissions than 0600, whatever the
 * process umask: it is bound inside a fresh directory of mode 0700 next to the requested path,
 * restricted to 0600, and only then renamed into place (rename is atomic, and a bound socket keeps
 * working under its new name). A stale file at the path is replaced, as QEMU does. Used by the QMP
 * monitor and the NBD server alike: either socket lets its client read and write the disks.
 */
public final class PrivateUnixSocket {
    /** sun_path holds 108 bytes including the terminating NUL. */
    public static final int MAX_PATH = 107;

    private PrivateUnixSocket() {}

    /** Binds a UNIX socket at {@code target} (absolute), mode 0600 from the moment it is reachable. */
    public static ServerSocketChannel bind(Path target) throws IOException {
        if (target.toString().getBytes(StandardCharsets.UTF_8).length > MAX_PATH) {
            throw new IOException("UNIX socket path '" + target + "' is too long");
        }
        Path parent = target.toAbsolutePath().getParent();
        Path dir = parent.resolve(
                ".strata-" + Long.toString(ThreadLocalRandom.current().nextLong() >>> 1, 36));
        Path staging = dir.resolve("s");
        if (staging.toString().length() > MAX_PATH) {
            // the staging name does not fit: bind in place and restrict at once (a short window)
            Files.deleteIfExists(target);
            ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            try {
                server.bind(UnixDomainSocketAddress.of(target));
                Files.setPosixFilePermissions(target, PosixFilePermissions.fromString("rw-------"));
                return server;
            } catch (IOException | RuntimeException e) {
                server.close();
                throw e;
            }
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
}
