package dev.strata.nbd;

import static dev.strata.block.nbd.NbdProtocol.*;

import java.io.IOException;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The fixed newstyle handshake of one connection: the greeting, then options until the client
 * picks an export (GO or EXPORT_NAME), aborts, or breaks the protocol.
 *
 * <p>Invariants: every option's payload is consumed exactly, whether it is understood or not, so
 * a bad option is answered with an error and the next option is read in step; what cannot be
 * kept in step (a wrong magic, a payload over 32 MiB, unknown client flags, an EXPORT_NAME that
 * names nothing) ends the connection, as the protocol says. Payloads are bounded before they are
 * read, so no client can make the server allocate more than {@link #MAX_OPTION} per option.
 */
final class Handshake {
    /** The exports a client may choose from. */
    interface Exports {
        /** The export of that name, or null (an export shutting down is not offered). */
        Export find(String name);

        List<Export> list();
    }

    /** What the handshake agreed: the export, and how replies are to be sent. */
    record Agreed(Export export, boolean structured, List<MetaContext> contexts) {}

    /** A protocol violation after which the connection must close. */
    static final class Violation extends IOException {
        private static final long serialVersionUID = 1L;

        Violation(String message) {
            super(message);
        }
    }

    /** Options whose payload is parsed are read whole; longer ones are refused with TOO_BIG. */
    static final int MAX_OPTION = 1 << 20;

    private final Wire wire;
    private final Exports exports;

    // negotiated so far
    private boolean structured;
    private Export metaExport;
    private List<MetaContext> contexts = List.of();

    Handshake(Wire wire, Exports exports) {
        this.wire = wire;
        this.exports = exports;
    }

    /** Runs the handshake; null when the client aborted. */
    Agreed run() throws IOException {
        ByteBuffer hello = wire.out(18);
        hello.putLong(NBDMAGIC).putLong(IHAVEOPT).putShort((short) (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
        wire.send(hello.flip());
        int clientFlags = wire.readInt();
        if ((clientFlags & ~(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)) != 0) {
            throw new Violation("Unsupported client flags 0x" + Integer.toHexString(clientFlags));
        }
        boolean fixed = (clientFlags & FLAG_C_FIXED_NEWSTYLE) != 0;
        boolean noZeroes = (clientFlags & FLAG_C_NO_ZEROES) != 0;
        while (true) {
            ByteBuffer h = wire.read(16);
            long magic = h.getLong();
            int option = h.getInt();
            long length = Integer.toUnsignedLong(h.getInt());
            if (magic != IHAVEOPT) {
                throw new Violation("Bad option magic 0x" + Long.toHexString(magic));
            }
            if (length > MAX_BUFFER) {
                throw new Violation("option length " + length + " is larger than max len " + MAX_BUFFER);
            }
            if (!fixed && option != OPT_EXPORT_NAME) {
                throw new Violation("Unsupported option " + option + " without fixed newstyle");
            }
            switch (option) {
                case OPT_EXPORT_NAME -> {
                    return exportName(length, noZeroes);
                }
                case OPT_ABORT -> {
                    wire.skip(length);
                    reply(option, REP_ACK, new byte[0]);
                    return null;
                }
                case OPT_LIST -> list(length);
                case OPT_STARTTLS -> refuse(option, length, REP_ERR_POLICY, "TLS not configured");
                case OPT_STRUCTURED_REPLY -> structuredReply(length);
                case OPT_INFO, OPT_GO, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT -> {
                    if (length > MAX_OPTION) {
                        refuse(option, length, REP_ERR_TOO_BIG, "option payload too big");
                        continue;
                    }
                    ByteBuffer payload = ByteBuffer.wrap(wire.readBytes((int) length));
                    Agreed agreed = parsed(option, payload);
                    if (agreed != null) {
                        return agreed;
                    }
                }
                default ->
                    refuse(
                            option,
                            length,
                            REP_ERR_UNSUP,
                            "Unsupported option " + Integer.toUnsignedString(option) + " (" + optionName(option) + ")");
            }
        }
    }

    private Agreed exportName(long length, boolean noZeroes) throws IOException {
        if (length > MAX_STRING) {
            throw new Violation("export name too long");
        }
        String name = new String(wire.readBytes((int) length), StandardCharsets.UTF_8);
        Export e = exports.find(name);
        if (e == null) {
            throw new Violation("export '" + name + "' not present");
        }
        ByteBuffer out = wire.out(10 + 124);
        out.putLong(e.size()).putShort((short) transmissionFlags(e));
        if (!noZeroes) {
            out.put(new byte[124]);
        }
        wire.send(out.flip());
        return agree(e);
    }

    private Agreed agree(Export e) {
        List<MetaContext> chosen = e == metaExport ? contexts : List.of();
        return new Agreed(e, structured, chosen);
    }

    private int transmissionFlags(Export e) {
        return e.flags() | (structured ? FLAG_SEND_DF : 0);
    }

    private void list(long length) throws IOException {
        if (length != 0) {
            refuse(OPT_LIST, length, REP_ERR_INVALID, unexpectedLength(OPT_LIST));
            return;
        }
        for (Export e : exports.list()) {
            byte[] name = e.name().getBytes(StandardCharsets.UTF_8);
            byte[] desc =
                    e.description() == null ? new byte[0] : e.description().getBytes(StandardCharsets.UTF_8);
            ByteBuffer data = ByteBuffer.allocate(4 + name.length + desc.length);
            data.putInt(name.length).put(name).put(desc);
            reply(OPT_LIST, REP_SERVER, data.array());
        }
        reply(OPT_LIST, REP_ACK, new byte[0]);
    }

    private static String unexpectedLength(int option) {
        return "option '" + optionName(option) + "' has unexpected length";
    }

    private void structuredReply(long length) throws IOException {
        if (length != 0) {
            refuse(OPT_STRUCTURED_REPLY, length, REP_ERR_INVALID, unexpectedLength(OPT_STRUCTURED_REPLY));
        } else if (structured) {
            reply(OPT_STRUCTURED_REPLY, REP_ERR_INVALID, utf8("structured reply already negotiated"));
        } else {
            structured = true;
            reply(OPT_STRUCTURED_REPLY, REP_ACK, new byte[0]);
        }
    }

    /** INFO, GO and the meta-context options, whose payload has been read whole. */
    private Agreed parsed(int option, ByteBuffer payload) throws IOException {
        String name;
        try {
            name = string(payload, option);
        } catch (BadOption e) {
            reply(option, REP_ERR_INVALID, utf8(e.getMessage()));
            return null;
        }
        try {
            if (option == OPT_INFO || option == OPT_GO) {
                return info(option, name, payload);
            }
            meta(option, name, payload);
        } catch (BadOption e) {
            reply(option, REP_ERR_INVALID, utf8(e.getMessage()));
        }
        return null;
    }

    private Agreed info(int option, String name, ByteBuffer payload) throws IOException, BadOption {
        int requests;
        List<Integer> wanted = new ArrayList<>();
        try {
            requests = Short.toUnsignedInt(payload.getShort());
            if (payload.remaining() != requests * 2) {
                throw new BadOption(unexpectedLength(option));
            }
            for (int i = 0; i < requests; i++) {
                wanted.add(Short.toUnsignedInt(payload.getShort()));
            }
        } catch (BufferUnderflowException e) {
            throw new BadOption(unexpectedLength(option));
        }
        Export e = exports.find(name);
        if (e == null) {
            reply(option, REP_ERR_UNKNOWN, utf8("export '" + name + "' not present"));
            return null;
        }
        if (wanted.contains(INFO_NAME)) {
            byte[] n = e.name().getBytes(StandardCharsets.UTF_8);
            reply(
                    option,
                    REP_INFO,
                    ByteBuffer.allocate(2 + n.length)
                            .putShort((short) INFO_NAME)
                            .put(n)
                            .array());
        }
        // as qemu-storage-daemon: the description whenever there is one, asked for or not
        if (e.description() != null) {
            byte[] d = e.description().getBytes(StandardCharsets.UTF_8);
            reply(
                    option,
                    REP_INFO,
                    ByteBuffer.allocate(2 + d.length)
                            .putShort((short) INFO_DESCRIPTION)
                            .put(d)
                            .array());
        }
        reply(
                option,
                REP_INFO,
                ByteBuffer.allocate(14)
                        .putShort((short) INFO_BLOCK_SIZE)
                        .putInt(1)
                        .putInt(4096)
                        .putInt(MAX_BUFFER)
                        .array());
        reply(
                option,
                REP_INFO,
                ByteBuffer.allocate(12)
                        .putShort((short) INFO_EXPORT)
                        .putLong(e.size())
                        .putShort((short) transmissionFlags(e))
                        .array());
        reply(option, REP_ACK, new byte[0]);
        return option == OPT_GO ? agree(e) : null;
    }

    private void meta(int option, String name, ByteBuffer payload) throws IOException, BadOption {
        List<String> queries = new ArrayList<>();
        try {
            long count = Integer.toUnsignedLong(payload.getInt());
            for (long i = 0; i < count; i++) {
                queries.add(string(payload, option));
            }
            if (payload.hasRemaining()) {
                throw inconsistent(option);
            }
        } catch (BufferUnderflowException e) {
            throw inconsistent(option);
        }
        // qemu-storage-daemon 7.2 lists contexts before structured replies, but will not set them
        if (!structured && option == OPT_SET_META_CONTEXT) {
            throw new BadOption("request option '" + optionName(option) + "' when structured reply is not negotiated");
        }
        Export e = exports.find(name);
        if (e == null) {
            reply(option, REP_ERR_UNKNOWN, utf8("export '" + name + "' not present"));
            return;
        }
        boolean listing = option == OPT_LIST_META_CONTEXT;
        List<MetaContext> matched = MetaQueries.match(e.contexts(), queries, listing);
        for (MetaContext c : matched) {
            byte[] n = c.name().getBytes(StandardCharsets.UTF_8);
            reply(
                    option,
                    REP_META_CONTEXT,
                    ByteBuffer.allocate(4 + n.length)
                            .putInt(listing ? 0 : c.id())
                            .put(n)
                            .array());
        }
        if (!listing) {
            metaExport = e;
            contexts = matched;
        }
        reply(option, REP_ACK, new byte[0]);
    }

    /** A malformed option payload: answered with NBD_REP_ERR_INVALID. */
    private static final class BadOption extends Exception {
        private static final long serialVersionUID = 1L;

        BadOption(String message) {
            super(message, null, false, false);
        }
    }

    /** A length-prefixed string of an option's payload (export name, context query). */
    private static String string(ByteBuffer payload, int option) throws BadOption {
        try {
            long len = Integer.toUnsignedLong(payload.getInt());
            if (len > payload.remaining()) {
                throw inconsistent(option);
            }
            if (len > MAX_STRING) {
                throw new BadOption("Invalid name length: " + len);
            }
            byte[] b = new byte[(int) len];
            payload.get(b);
            return new String(b, StandardCharsets.UTF_8);
        } catch (BufferUnderflowException e) {
            throw inconsistent(option);
        }
    }

    private static BadOption inconsistent(int option) {
        return new BadOption("Inconsistent lengths in option " + optionName(option));
    }

    private void refuse(int option, long length, int type, String message) throws IOException {
        wire.skip(length);
        reply(option, type, utf8(message));
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private void reply(int option, int type, byte[] data) throws IOException {
        ByteBuffer out = wire.out(20 + data.length);
        out.putLong(OPTION_REPLY_MAGIC)
                .putInt(option)
                .putInt(type)
                .putInt(data.length)
                .put(data);
        wire.send(out.flip());
    }
}
