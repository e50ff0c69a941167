package dev.strata.qmp;

import dev.strata.qmp.schema.QType;
import dev.strata.qmp.schema.Schema;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The command table of a daemon: every command declared once, with its argument type derived from
 * a record ({@link Schema}) so that validation is generic. Registration happens at start-up; a bad
 * declaration fails there.
 */
public final class Commands {
    /** A handler typed by its argument record. */
    @FunctionalInterface
    public interface TypedHandler<A> {
        Object run(A arguments, Command.Context context) throws QmpException;
    }

    /** A handler that needs neither arguments nor the session. */
    @FunctionalInterface
    public interface Query {
        Object run() throws QmpException;
    }

    /** The arguments of a command that takes none: any member is unexpected. */
    public record NoArguments() {}

    private final Map<String, Command> commands = new LinkedHashMap<>();

    /** Declares a command whose arguments are the members of {@code arguments} (a record). */
    public <A> Commands add(String name, Class<A> arguments, String returns, TypedHandler<A> handler) {
        QType type = Schema.struct(arguments);
        return put(new Command(name, type, returns, (args, ctx) -> handler.run(arguments.cast(args), ctx), false));
    }

    /** Declares a command without arguments. */
    public Commands add(String name, String returns, Query query) {
        return add(name, NoArguments.class, returns, (a, ctx) -> query.run());
    }

    /**
     * Declares a "boxed" command: its whole {@code arguments} object is one type that is not a
     * record (blockdev-add's flat union); the handler gets the decoded map.
     */
    public Commands addBoxed(String name, QType arguments, String returns, TypedHandler<Map<String, Object>> handler) {
        return put(new Command(name, arguments, returns, (args, ctx) -> handler.run(castMap(args), ctx), false));
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> castMap(Object args) {
        return (Map<String, Object>) args;
    }

    private Commands put(Command c) {
        if (commands.putIfAbsent(c.name(), c) != null) {
            throw new IllegalArgumentException("command declared twice: " + c.name());
        }
        return this;
    }

    public Command find(String name) {
        return commands.get(name);
    }

    public List<Command> all() {
        return new ArrayList<>(commands.values());
    }
}
