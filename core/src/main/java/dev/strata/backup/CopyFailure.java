package dev.strata.backup;

import dev.strata.block.BlockException;
import java.io.IOException;

/**
 * A failed copy: whether the source read or the target write failed, the errno, and QEMU's text
 * for it (strerror: "Input/output error", "No space left on device").
 */
final class CopyFailure extends Exception {
    private static final long serialVersionUID = 1L;

    private final boolean read;
    private final int errno;

    CopyFailure(boolean read, IOException cause) {
        super(text(cause), cause, false, false);
        this.read = read;
        this.errno = errno(cause);
    }

    boolean read() {
        return read;
    }

    int errno() {
        return errno;
    }

    /** The errno the block layer gave the failure (host errors get theirs in the file driver). */
    static int errno(IOException e) {
        return e instanceof BlockException b ? b.errno() : BlockException.EIO;
    }

    /** strerror of the errno for errors the block layer numbered, the message for others. */
    static String text(IOException e) {
        return e instanceof BlockException b ? BlockException.strerror(b.errno()) : String.valueOf(e.getMessage());
    }
}
