package dev.strata.backup;

/** A backup refused before it started, in QEMU's words. */
public final class BackupException extends Exception {
    private static final long serialVersionUID = 1L;

    public BackupException(String message) {
        super(message, null, false, false);
    }
}
