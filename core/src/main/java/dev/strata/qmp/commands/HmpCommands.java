package dev.strata.qmp.commands;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.DriveOptions;
import dev.strata.qmp.Commands;
import dev.strata.qmp.schema.Qapi;
import java.io.IOException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code human-monitor-command}, for the HMP commands scripts drive guest I/O and drives with:
 * {@code qemu-io [-d] DEVICE "COMMAND"}, {@code drive_add SLOT OPTIONS}, {@code drive_del ID}.
 *
 * <p>The reply: QEMU returns {@code ""} for a qemu-io command and prints qemu-io's output on its
 * standard output, so a script cannot tell a failed or mismatching request from a good one. Strata
 * returns {@code ""} when the command went well (as QEMU, so iotest-style transcripts match) and
 * qemu-io's error lines when it did not ("Pattern verification failed at offset 0, 512 bytes"),
 * with HMP's CRLF line ends. Reports of good requests go to the log.
 */
public final class HmpCommands {
    private static final Logger LOG = LoggerFactory.getLogger(HmpCommands.class);

    private HmpCommands() {}

    /** Arguments of human-monitor-command. */
    public record HumanMonitorCommandArguments(
            String commandLine, @Qapi.Optional Long cpuIndex) {}

    public static void register(Commands commands, BlockGraph graph) {
        Nodes nodes = new Nodes(graph);
        commands.add(
                "human-monitor-command",
                HumanMonitorCommandArguments.class,
                "str",
                (a, ctx) -> crlf(run(nodes, a.commandLine())));
    }

    private static String crlf(String text) {
        return text.replace("\n", "\r\n");
    }

    static String run(Nodes nodes, String line) {
        HmpLine in = new HmpLine(line);
        String name = in.word();
        if (name.isEmpty()) {
            return "";
        }
        return switch (name) {
            case "qemu-io" -> qemuIo(nodes, in);
            case "drive_add" -> driveAdd(nodes, in);
            case "drive_del" -> driveDel(nodes, in);
            default -> "unknown command: '" + name + "'\n";
        };
    }

    /**
     * {@code drive_add SLOT OPTIONS}: opens a drive as {@code --drive} does. The slot (a guest's
     * PCI address) is read and ignored: Strata has no guest devices, so every drive is if=none.
     */
    private static String driveAdd(Nodes nodes, HmpLine in) {
        String slot = in.word();
        String options = in.word();
        if (slot.isEmpty() || options.isEmpty()) {
            return "drive_add: string expected\nTry \"help drive_add\" for more information\n";
        }
        try {
            nodes.graph().addDrive(DriveOptions.parse(options, nodes.graph()));
            return "OK\n";
        } catch (IOException e) {
            return e.getMessage() + "\n";
        }
    }

    /** {@code drive_del ID}: closes a drive and its root node. */
    private static String driveDel(Nodes nodes, HmpLine in) {
        String id = in.word();
        if (id.isEmpty()) {
            return "drive_del: string expected\nTry \"help drive_del\" for more information\n";
        }
        try {
            nodes.graph().removeDrive(id);
            return "";
        } catch (IOException e) {
            return e.getMessage() + "\n";
        }
    }

    private static String qemuIo(Nodes nodes, HmpLine in) {
        String device = in.word();
        if (device.equals("-d")) {
            // -d names a guest device (qdev); Strata has none, so no name can match
            String qdev = in.word();
            return "Error: Cannot find device='" + qdev + "'\n";
        }
        if (device.isEmpty()) {
            return "qemu-io: block device name expected\n";
        }
        String command;
        try {
            command = in.string();
        } catch (IllegalArgumentException e) {
            return "qemu-io: " + e.getMessage() + "\n";
        }
        if (command.isEmpty()) {
            return "qemu-io: missing command\n";
        }
        if (!in.atEnd()) {
            return "qemu-io: extraneous characters at the end of line\n";
        }
        BlockNode node = nodes.resolve(device);
        if (node == null) {
            return "Error: Cannot find device='' nor node-name='" + device + "'\n";
        }
        QemuIo.Result r = QemuIo.run(node, command);
        if (!r.report().isEmpty()) {
            LOG.info("qemu-io {} \"{}\": {}", device, command, r.report().strip());
        }
        return r.problems();
    }

    /** HMP's argument reader: words split by blanks, strings in double quotes with C escapes. */
    private static final class HmpLine {
        private final String s;
        private int pos;

        HmpLine(String s) {
            this.s = s;
        }

        private void skipBlanks() {
            while (pos < s.length() && Character.isWhitespace(s.charAt(pos))) {
                pos++;
            }
        }

        String word() {
            skipBlanks();
            int start = pos;
            while (pos < s.length() && !Character.isWhitespace(s.charAt(pos))) {
                pos++;
            }
            return s.substring(start, pos);
        }

        String string() {
            skipBlanks();
            if (pos >= s.length() || s.charAt(pos) != '"') {
                return word();
            }
            pos++;
            StringBuilder out = new StringBuilder();
            while (pos < s.length() && s.charAt(pos) != '"') {
                char c = s.charAt(pos++);
                if (c == '\\') {
                    if (pos >= s.length()) {
                        throw new IllegalArgumentException("unterminated string");
                    }
                    char e = s.charAt(pos++);
                    switch (e) {
                        case '\\', '\'', '"' -> out.append(e);
                        case 'n' -> out.append('\n');
                        case 'r' -> out.append('\r');
                        default -> throw new IllegalArgumentException("unsupported escape code: '\\" + e + "'");
                    }
                } else {
                    out.append(c);
                }
            }
            if (pos >= s.length()) {
                throw new IllegalArgumentException("unterminated string");
            }
            pos++;
            return out.toString();
        }

        boolean atEnd() {
            skipBlanks();
            return pos >= s.length();
        }
    }
}
