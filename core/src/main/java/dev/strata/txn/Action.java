package dev.strata.txn;

/**
 * One action of a transaction (QEMU's TransactionActionDrv).
 *
 * <p>Contract: only {@link #prepare} may fail, and a failed prepare leaves nothing behind; after
 * every action prepared, exactly one of {@link #commit} or {@link #abort} runs for each prepared
 * action (abort in reverse order); {@link #clean} always runs last for each prepared action.
 */
public interface Action {
    void prepare() throws TransactionException;

    default void commit() {}

    default void abort() {}

    default void clean() {}

    /** A step that may fail with QEMU's words. */
    @FunctionalInterface
    interface Step<T> {
        T run() throws TransactionException;
    }

    /** The {@code abort} action: its prepare always fails. */
    static Action abortAction() {
        return () -> {
            throw new TransactionException("Transaction aborted using Abort action");
        };
    }

    /** An action whose prepare makes a change and returns how to undo it (bitmap clear, merge...). */
    static Action undoable(Step<Runnable> change) {
        return new Action() {
            private Runnable undo;

            @Override
            public void prepare() throws TransactionException {
                undo = change.run();
            }

            @Override
            public void abort() {
                undo.run();
            }
        };
    }

    /** An action whose prepare makes a change that commit completes or abort takes back. */
    static <T> Action of(Step<T> prepare, java.util.function.Consumer<T> commit, java.util.function.Consumer<T> abort) {
        return new Action() {
            private T state;

            @Override
            public void prepare() throws TransactionException {
                state = prepare.run();
            }

            @Override
            public void commit() {
                commit.accept(state);
            }

            @Override
            public void abort() {
                abort.accept(state);
            }
        };
    }
}
