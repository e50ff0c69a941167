package dev.strata.block;

import java.io.IOException;

/**
 * A block-layer failure whose message is fit to show a user as it is, in QEMU's words where QEMU
 * has words for it ("Could not open 'x': No such file or directory", "Image is not in qcow2 format").
 *
 * <p>{@link #errno()} carries the POSIX error number the failure maps to (EIO unless said
 * otherwise), so NBD replies and job events can report it as QEMU does.
 */
public class BlockException extends IOException {
    public static final int EIO = 5;
    public static final int ENOSPC = 28;
    public static final int EINVAL = 22;
    public static final int EPERM = 1;
    public static final int ENOTSUP = 95;
    public static final int EFBIG = 27;

    private final int errno;

    public BlockException(String message) {
        this(message, EIO);
    }

    public BlockException(String message, int errno) {
        super(message);
        this.errno = errno;
    }

    public BlockException(String message, Throwable cause) {
        super(message, cause);
        this.errno = EIO;
    }

    public int errno() {
        return errno;
    }
}
