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
    public static final int EPERM = 1;
    public static final int ENOENT = 2;
    public static final int EIO = 5;
    public static final int EAGAIN = 11;
    public static final int ENOMEM = 12;
    public static final int EACCES = 13;
    public static final int EBUSY = 16;
    public static final int ENOSPC = 28;
    public static final int EINVAL = 22;
    public static final int ENOTSUP = 95;
    public static final int EFBIG = 27;
    public static final int ETIMEDOUT = 110;

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

    /** The C library's strerror() text for an errno, as QEMU appends it to its messages. */
    public static String strerror(int errno) {
        return switch (errno) {
            case EPERM -> "Operation not permitted";
            case ENOENT -> "No such file or directory";
            case EIO -> "Input/output error";
            case 6 -> "No such device or address";
            case 7 -> "Argument list too long";
            case 9 -> "Bad file descriptor";
            case 11 -> "Resource temporarily unavailable";
            case ENOMEM -> "Cannot allocate memory";
            case EACCES -> "Permission denied";
            case 14 -> "Bad address";
            case EBUSY -> "Device or resource busy";
            case 17 -> "File exists";
            case 19 -> "No such device";
            case 21 -> "Is a directory";
            case EINVAL -> "Invalid argument";
            case 24 -> "Too many open files";
            case EFBIG -> "File too large";
            case ENOSPC -> "No space left on device";
            case 29 -> "Illegal seek";
            case 30 -> "Read-only file system";
            case 34 -> "Numerical result out of range";
            case 61 -> "No data available";
            case 75 -> "Value too large for defined data type";
            case ENOTSUP -> "Operation not supported";
            case 108 -> "Cannot send after transport endpoint shutdown";
            case ETIMEDOUT -> "Connection timed out";
            case 122 -> "Disk quota exceeded";
            case 125 -> "Operation canceled";
            default -> "Unknown error " + errno;
        };
    }
}
