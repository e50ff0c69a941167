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

    static int errno(IOException e) {
        if (e instanceof BlockException b) {
            return b.errno();
        }
        String m = String.valueOf(e.getMessage());
        if (m.contains("No space left on device")) {
            return BlockException.ENOSPC;
        }
        return BlockException.EIO;
    }

    /** strerror of the errno for errors the block layer numbered, the message for others. */
    static String text(IOException e) {
        String m = String.valueOf(e.getMessage());
        if (m.contains("No space left on device")) {
            return "No space left on device";
        }
        if (e instanceof BlockException b) {
            return BlockException.strerror(b.errno());
        }
        return m;
    }
}
