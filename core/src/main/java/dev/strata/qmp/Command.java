package dev.strata.qmp;

import dev.strata.qmp.schema.QType;

/**
 * One QMP command as declared: its name, the type its {@code arguments} must have (checked by the
 * dispatcher before the handler runs, so handlers never parse JSON), and the handler.
 *
 * @param returns the QAPI type name of the result, for documentation ("{}" for none)
 * @param allowOob whether {@code exec-oob} may run it (no Strata command may yet)
 */
public record Command(String name, QType arguments, String returns, Handler handler, boolean allowOob) {

    /** Runs a command with its decoded arguments; returns the result (null for {@code {}}). */
    @FunctionalInterface
    public interface Handler {
        Object run(Object arguments, Context context) throws QmpException;
    }

    /** What a handler may ask of the session that sent the command. */
    public interface Context {
        QmpSession session();

        /** Runs {@code action} once the reply has been written (quit: reply first, then exit). */
        void afterReply(Runnable action);
    }
}
