package dev.strata.block.dirty;

/** A refused bitmap operation, worded as QEMU words it (QMP reports it as a GenericError). */
public final class BitmapException extends Exception {
    private static final long serialVersionUID = 1L;

    public BitmapException(String message) {
        super(message);
    }
}
