package dev.strata.txn;

/** Why a transaction's action could not be prepared, in QEMU's words; nothing was changed. */
public final class TransactionException extends Exception {
    private static final long serialVersionUID = 1L;

    public TransactionException(String message) {
        super(message, null, false, false);
    }
}
