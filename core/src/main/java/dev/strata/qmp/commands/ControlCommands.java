package dev.strata.qmp.commands;

import dev.strata.qmp.Commands;
import dev.strata.qmp.ErrorClass;
import dev.strata.qmp.Qmp;
import dev.strata.qmp.QmpException;
import dev.strata.qmp.schema.Introspection;
import dev.strata.qmp.schema.Qapi;
import java.util.List;

/** The protocol's own commands: qmp_capabilities, query-version, query-commands, query-qmp-schema, quit. */
public final class ControlCommands {
    private ControlCommands() {}

    /** QAPI's QMPCapability. */
    public enum QmpCapability {
        OOB
    }

    /** Arguments of qmp_capabilities. */
    public record QmpCapabilitiesArguments(@Qapi.Optional List<QmpCapability> enable) {}

    /** QAPI's CommandInfo. */
    public record CommandInfo(String name) {}

    /**
     * Declares the control commands. {@code quit} replies first and then runs {@code shutdown}
     * (QEMU may close the socket before the reply; Strata always sends it).
     */
    public static void register(Commands commands, Qmp.VersionInfo version, Runnable shutdown) {
        commands.add("qmp_capabilities", QmpCapabilitiesArguments.class, "{}", (args, ctx) -> {
            if (ctx.session().negotiated()) {
                throw new QmpException(
                        ErrorClass.CommandNotFound, "Capabilities negotiation is already complete, command ignored");
            }
            boolean oob = args.enable() != null && args.enable().contains(QmpCapability.OOB);
            ctx.session().completeNegotiation(oob);
            return null;
        });
        commands.add("query-version", "VersionInfo", () -> version);
        commands.add(
                "query-commands",
                "[CommandInfo]",
                () -> commands.all().stream()
                        .map(c -> new CommandInfo(c.name()))
                        .toList());
        // the schema of every command declared, this one included, from the types that check them
        commands.add(
                "query-qmp-schema",
                "[SchemaInfo]",
                () -> Introspection.describe(commands.all().stream()
                        .map(c -> new Introspection.CommandEntry(
                                c.name(), c.arguments(), !c.returns().equals("{}"), c.allowOob()))
                        .toList()));
        commands.add("quit", Commands.NoArguments.class, "{}", (args, ctx) -> {
            ctx.afterReply(shutdown);
            return null;
        });
    }
}
