package dev.strata;

import java.util.Map;
import java.util.function.Supplier;
import picocli.CommandLine;

/**
 * Adds subcommands to a command line, building only the one the arguments name. picocli reads
 * every registered command's annotations up front, which costs Strata a few hundred milliseconds
 * of start-up for commands the user did not ask for; help and unknown names still get all of them.
 */
public final class LazySubcommands {
    private LazySubcommands() {}

    /**
     * Adds to {@code parent} the subcommand that {@code args[index]} names, or every one of
     * {@code table} (in its order) when it names none of them or asks for help.
     */
    public static void add(CommandLine parent, Map<String, Supplier<Object>> table, String[] args, int index) {
        String name = index < args.length ? args[index] : null;
        if ("--version".equals(name) || "-V".equals(name)) {
            return; // nothing below is needed to print the version
        }
        Supplier<Object> only = name == null || name.equals("help") ? null : table.get(name);
        if (only != null) {
            parent.addSubcommand(name, only.get());
            return;
        }
        table.forEach((n, s) -> parent.addSubcommand(n, s.get()));
    }
}
