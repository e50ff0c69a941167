package dev.strata.block.file;

import dev.strata.block.BlockException;
import dev.strata.block.OpenFlags;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * How a {@link FileDriver} opens its file: the native descriptor (checked to be a regular file,
 * with QEMU's image lock taken as the flags call for), then the channel through {@code
 * /proc/self/fd}, and QEMU's texts for every refusal. Without the native layer, the channel alone.
 */
final class FileOpening {
    private FileOpening() {}

    /** Whether {@code /proc/self/fd} is there to open a descriptor's file by: asked once, not per open. */
    private static final boolean PROC_FD = Files.isDirectory(Path.of("/proc/self/fd"));

    /** What an open gives the driver: the channel, the descriptor (-1 without the native layer), whether locked. */
    record Opened(FileChannel channel, int fd, boolean locked) {}

    /**
     * Opens {@code filename}, which must be a regular file, and takes the image lock that {@code
     * flags} call for.
     *
     * @throws BlockException with QEMU's text: "Could not open 'x': No such file or directory",
     *     "'file' driver requires 'x' to be a regular file", or a lock conflict ("Failed to get
     *     \"write\" lock" and, on the next line, "Is another process using the image [x]?")
     */
    static Opened open(String filename, OpenFlags flags, FileDriver.Locking locking) throws IOException {
        refuseNul(filename);
        if (!Posix.AVAILABLE) {
            if (locking == FileDriver.Locking.ON) {
                throw lockingUnavailable(filename);
            }
            return new Opened(openChannel(Path.of(filename), filename, flags.readOnly()), -1, false);
        }
        int fd;
        try {
            fd = Posix.open(filename, flags.readOnly() ? Posix.O_RDONLY : Posix.O_RDWR);
        } catch (BlockException e) {
            throw openFailure(filename, e.errno());
        }
        try {
            if (!Posix.fstat(fd).isRegularFile()) {
                throw new BlockException(
                        "'file' driver requires '" + filename + "' to be a regular file", BlockException.EINVAL);
            }
            boolean lock = switch (locking) {
                case OFF -> false;
                case AUTO -> ImageLock.supported(fd);
                case ON -> {
                    if (!ImageLock.supported(fd)) {
                        throw lockingUnavailable(filename);
                    }
                    yield true;
                }
            };
            if (lock) {
                ImageLock.forFlags(flags).acquire(fd, filename);
            }
            Path path = PROC_FD ? Path.of("/proc/self/fd/" + fd) : Path.of(filename);
            return new Opened(openChannel(path, filename, flags.readOnly()), fd, lock);
        } catch (IOException | RuntimeException e) {
            closeQuietly(fd);
            throw e;
        }
    }

    /**
     * QEMU's file create: opens {@code filename}, creating it (mode 0644 before the umask) if it is
     * missing, takes {@link ImageLock#forCreate the create lock}, empties the file and sizes it to
     * {@code size} bytes (sparse), then closes it. An image in use by anyone who does not share
     * write is refused before a byte of it changes.
     *
     * @throws BlockException "Could not create 'x': reason" for a file that cannot be opened or
     *     created, QEMU's lock-conflict text for a file in use
     */
    static void create(String filename, long size) throws IOException {
        refuseNul(filename);
        if (!Posix.AVAILABLE) {
            try (FileChannel ch = FileChannel.open(
                    Path.of(filename), StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
                ch.truncate(0);
                if (size > 0) {
                    ch.write(java.nio.ByteBuffer.allocate(1), size - 1);
                }
            }
            return;
        }
        int fd;
        try {
            fd = Posix.open(filename, Posix.O_RDWR | Posix.O_CREAT, 0644);
        } catch (BlockException e) {
            throw new BlockException("Could not create '" + filename + "': " + Posix.strerror(e.errno()), e.errno());
        }
        try {
            if (!Posix.fstat(fd).isRegularFile()) {
                throw new BlockException(
                        "'file' driver requires '" + filename + "' to be a regular file", BlockException.EINVAL);
            }
            if (ImageLock.supported(fd)) {
                ImageLock.forCreate().acquire(fd, filename);
            }
            Posix.ftruncate(fd, 0);
            Posix.ftruncate(fd, size);
        } finally {
            closeQuietly(fd);
        }
    }

    /** A name with a NUL byte cannot reach the kernel whole: refused, never cut short at the NUL. */
    private static void refuseNul(String filename) throws BlockException {
        if (filename.indexOf('\0') >= 0) {
            throw new BlockException("Could not open '" + filename + "': Invalid argument", BlockException.EINVAL);
        }
    }

    private static FileChannel openChannel(Path path, String filename, boolean readOnly) throws BlockException {
        try {
            return readOnly
                    ? FileChannel.open(path, StandardOpenOption.READ)
                    : FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
        } catch (NoSuchFileException e) {
            throw openFailure(filename, Posix.ENOENT);
        } catch (AccessDeniedException e) {
            throw openFailure(filename, Posix.EACCES);
        } catch (IOException e) {
            String reason = e instanceof java.nio.file.FileSystemException fse && fse.getReason() != null
                    ? fse.getReason()
                    : e.getMessage();
            throw new BlockException("Could not open '" + filename + "': " + reason, e);
        }
    }

    private static BlockException openFailure(String filename, int errno) {
        return switch (errno) {
            case Posix.ENOENT -> new BlockException("Could not open '" + filename + "': No such file or directory");
            case Posix.EACCES, BlockException.EPERM ->
                new BlockException("Could not open '" + filename + "': Permission denied", BlockException.EPERM);
            default -> new BlockException("Could not open '" + filename + "': " + Posix.strerror(errno), errno);
        };
    }

    private static BlockException lockingUnavailable(String filename) {
        return new BlockException(
                "locking=on was requested but OFD locks do not work for '" + filename + "'", BlockException.ENOTSUP);
    }

    private static void closeQuietly(int fd) {
        try {
            Posix.close(fd);
        } catch (BlockException ignored) {
            // the open already failed; that error is the one to report
        }
    }
}
