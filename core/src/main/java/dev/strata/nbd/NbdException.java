package dev.strata.nbd;

/** A refusal of an NBD server or export operation, worded as qemu-storage-daemon words it. */
public final class NbdException extends Exception {
    private static final long serialVersionUID = 1L;

    public NbdException(String message) {
        super(message, null, false, false);
    }
}
