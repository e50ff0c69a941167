package dev.strata.qmp.schema;

/** Input that does not fit a declared type, worded as QEMU's QAPI visitors word it. */
public final class SchemaException extends Exception {
    private static final long serialVersionUID = 1L;

    public SchemaException(String message) {
        super(message, null, false, false);
    }
}
