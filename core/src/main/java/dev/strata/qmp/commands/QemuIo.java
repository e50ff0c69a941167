package dev.strata.qmp.commands;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * A qemu-io command run on a node, as HMP's {@code qemu-io} runs one: {@code read}, {@code write},
 * {@code discard}, {@code flush} with qemu-io's options, number syntax and messages (each recorded
 * from qemu-io 7.2).
 *
 * <p>The output is split in two: {@link Result#problems} holds the lines qemu-io prints when
 * something is wrong (a bad argument, a failed request, a pattern mismatch), {@link Result#report}
 * the "wrote 512/512 bytes at offset 0" lines of a request that went well.
 *
 * <p>Large requests go down in chunks of {@link #CHUNK} bytes through one reused buffer, so a
 * 2 GiB qemu-io request never needs 2 GiB of heap.
 */
final class QemuIo {
    /** The largest single request QEMU accepts (BDRV_REQUEST_MAX_BYTES). */
    static final long MAX_REQUEST = 2147483136L;

    static final int CHUNK = 1 << 20;

    /** What a command printed: trouble first, and the report of a request that went well. */
    record Result(String problems, String report) {}

    private final StringBuilder problems = new StringBuilder();
    private final StringBuilder report = new StringBuilder();

    private QemuIo() {}

    static Result run(BlockNode node, String commandLine) {
        QemuIo io = new QemuIo();
        List<String> argv = new ArrayList<>(Arrays.asList(commandLine.trim().split("\\s+")));
        if (argv.getFirst().isEmpty()) {
            return new Result("", "");
        }
        String name = argv.removeFirst();
        try {
            switch (name) {
                case "read", "r" -> io.read(node, argv);
                case "write", "w" -> io.write(node, argv);
                case "discard", "d" -> io.discard(node, argv);
                case "flush", "f" -> io.flush(node, argv);
                default -> io.problem("command \"" + name + "\" not found");
            }
        } catch (Refused r) {
            io.problem(r.getMessage());
        }
        return new Result(io.problems.toString(), io.report.toString());
    }

    /** A command refused before any I/O, with qemu-io's message. */
    private static final class Refused extends Exception {
        private static final long serialVersionUID = 1L;

        Refused(String message) {
            super(message, null, false, false);
        }
    }

    private void problem(String line) {
        problems.append(line).append('\n');
    }

    /** qemu-io's getopt: options first ("-P0xab", "-P 0xab", "-zu"), then positional arguments. */
    private record Parsed(java.util.Map<Character, String> options, List<String> args) {}

    private static Parsed getopt(String command, List<String> argv, String flags, String withArg, String usage)
            throws Refused {
        java.util.Map<Character, String> opts = new java.util.HashMap<>();
        int i = 0;
        for (; i < argv.size(); i++) {
            String a = argv.get(i);
            if (a.equals("--")) {
                i++;
                break;
            }
            if (!a.startsWith("-") || a.length() == 1) {
                break;
            }
            for (int k = 1; k < a.length(); k++) {
                char c = a.charAt(k);
                if (withArg.indexOf(c) >= 0) {
                    String value = k + 1 < a.length() ? a.substring(k + 1) : i + 1 < argv.size() ? argv.get(++i) : null;
                    if (value == null) {
                        throw new Refused(command + ": option requires an argument -- '" + c + "'\n" + usage);
                    }
                    opts.put(c, value);
                    break;
                }
                if (flags.indexOf(c) < 0) {
                    throw new Refused(command + ": invalid option -- '" + c + "'\n" + usage);
                }
                opts.put(c, "");
            }
        }
        return new Parsed(opts, argv.subList(i, argv.size()));
    }

    private static void argCount(String command, List<String> args, int expected) throws Refused {
        if (args.size() < expected) {
            throw new Refused("bad argument count " + args.size() + " to " + command + ", expected at least " + expected
                    + " arguments");
        }
        if (args.size() > expected) {
            throw new Refused("bad argument count " + args.size() + " to " + command + ", expected at most " + expected
                    + " arguments");
        }
    }

    /** qemu-io's cvtnum (qemu_strtosz): bytes, with an optional fraction and B/K/M/G/T/P/E suffix. */
    static long number(String s) throws Refused {
        String t = s;
        long multiplier = 1;
        char last = t.isEmpty() ? ' ' : Character.toUpperCase(t.charAt(t.length() - 1));
        int idx = "BKMGTPE".indexOf(last);
        if (idx >= 0) {
            multiplier = 1L << (idx * 10);
            t = t.substring(0, t.length() - 1);
        }
        BigDecimal value;
        try {
            if (t.startsWith("0x") || t.startsWith("0X")) {
                value = new BigDecimal(new java.math.BigInteger(t.substring(2), 16));
            } else {
                if (t.isEmpty() || !t.chars().allMatch(c -> (c >= '0' && c <= '9') || c == '.')) {
                    throw new NumberFormatException(s);
                }
                value = new BigDecimal(t);
                if (value.scale() > 0 && multiplier == 1) {
                    throw new NumberFormatException(s); // a fraction of a byte
                }
            }
        } catch (NumberFormatException e) {
            throw new Refused("Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- " + s);
        }
        BigDecimal bytes = value.multiply(BigDecimal.valueOf(multiplier)).setScale(0, RoundingMode.HALF_UP);
        if (bytes.compareTo(BigDecimal.valueOf(Long.MAX_VALUE)) > 0) {
            throw new Refused("Parsing error: argument too large -- " + s);
        }
        return bytes.longValueExact();
    }

    /** qemu-io's parse_pattern: a byte in C syntax (decimal, 0x hex, 0 octal). */
    private static int pattern(String s) throws Refused {
        try {
            int v;
            if (s.startsWith("0x") || s.startsWith("0X")) {
                v = Integer.parseInt(s.substring(2), 16);
            } else if (s.length() > 1 && s.startsWith("0")) {
                v = Integer.parseInt(s.substring(1), 8);
            } else {
                v = Integer.parseInt(s);
            }
            if (v < 0 || v > 255) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw new Refused(s + " is not a valid pattern byte");
        }
    }

    private static String strerror(IOException e) {
        return BlockException.strerror(e instanceof BlockException b ? b.errno() : BlockException.EIO);
    }

    /** QEMU answers a request past the end with EIO, whatever the reason Strata's check gives. */
    private static boolean inRange(BlockNode node, long offset, long length) throws IOException {
        long size = node.length();
        return offset <= size && length <= size - offset;
    }

    private void read(BlockNode node, List<String> argv) throws Refused {
        String usage = "read [-q] [-P pattern] off len -- reads a number of bytes at a specified offset";
        Parsed p = getopt("read", argv, "q", "P", usage);
        argCount("read", p.args(), 2);
        int pat = p.options().containsKey('P') ? pattern(p.options().get('P')) : -1;
        long offset = number(p.args().get(0));
        long count = number(p.args().get(1));
        if (count > MAX_REQUEST) {
            throw new Refused("length cannot exceed " + MAX_REQUEST + ", given "
                    + p.args().get(1));
        }
        long start = System.nanoTime();
        boolean mismatch = false;
        try {
            if (!inRange(node, offset, count)) {
                throw new BlockException("out of range");
            }
            ByteBuffer buf = ByteBuffer.allocate((int) Math.min(CHUNK, Math.max(1, count)));
            for (long done = 0; done < count; ) {
                int n = (int) Math.min(buf.capacity(), count - done);
                buf.clear().limit(n);
                node.read(offset + done, buf);
                if (pat >= 0 && !mismatch) {
                    for (int i = 0; i < n; i++) {
                        if (buf.get(i) != (byte) pat) {
                            mismatch = true;
                            break;
                        }
                    }
                }
                done += n;
            }
        } catch (IOException e) {
            problem("read failed: " + strerror(e));
            return;
        }
        if (mismatch) {
            problem("Pattern verification failed at offset " + offset + ", " + count + " bytes");
        }
        if (!p.options().containsKey('q')) {
            report("read", offset, count, System.nanoTime() - start);
        }
    }

    private void write(BlockNode node, List<String> argv) throws Refused {
        String usage = "write [-qzu] [-P pattern] off len -- writes a number of bytes at a specified offset";
        Parsed p = getopt("write", argv, "qzu", "P", usage);
        boolean zero = p.options().containsKey('z');
        if (zero && p.options().containsKey('P')) {
            throw new Refused("Only one of -z, -P, and -s can be specified at the same time");
        }
        if (p.options().containsKey('u') && !zero) {
            throw new Refused("-u requires -z to be specified");
        }
        argCount("write", p.args(), 2);
        int pat = p.options().containsKey('P') ? pattern(p.options().get('P')) : 0xcd;
        long offset = number(p.args().get(0));
        long count = number(p.args().get(1));
        if (count > MAX_REQUEST) {
            throw new Refused("length cannot exceed " + MAX_REQUEST + " without -n, given "
                    + p.args().get(1));
        }
        long start = System.nanoTime();
        try {
            if (!inRange(node, offset, count)) {
                throw new BlockException("out of range");
            }
            if (zero) {
                node.writeZeroes(offset, count, p.options().containsKey('u'));
            } else {
                byte[] fill = new byte[(int) Math.min(CHUNK, Math.max(1, count))];
                Arrays.fill(fill, (byte) pat);
                for (long done = 0; done < count; ) {
                    int n = (int) Math.min(fill.length, count - done);
                    node.write(offset + done, fill, 0, n);
                    done += n;
                }
                if (count == 0) {
                    node.write(offset, fill, 0, 0);
                }
            }
        } catch (IOException e) {
            problem("write failed: " + strerror(e));
            return;
        }
        if (!p.options().containsKey('q')) {
            report("wrote", offset, count, System.nanoTime() - start);
        }
    }

    private void discard(BlockNode node, List<String> argv) throws Refused {
        String usage = "discard [-q] off len -- discards a number of bytes at a specified offset";
        Parsed p = getopt("discard", argv, "q", "", usage);
        argCount("discard", p.args(), 2);
        long offset = number(p.args().get(0));
        long count = number(p.args().get(1));
        long start = System.nanoTime();
        try {
            if (!inRange(node, offset, count)) {
                throw new BlockException("out of range");
            }
            node.discard(offset, count);
        } catch (IOException e) {
            problem("discard failed: " + strerror(e));
            return;
        }
        if (!p.options().containsKey('q')) {
            report("discard", offset, count, System.nanoTime() - start);
        }
    }

    private void flush(BlockNode node, List<String> argv) throws Refused {
        if (!argv.isEmpty()) {
            throw new Refused("bad argument count " + argv.size() + " to flush, expected 0 arguments");
        }
        try {
            node.flush();
        } catch (IOException e) {
            problem("flush failed: " + strerror(e));
        }
    }

    /** qemu-io's print_report, without pretending to its exact timing format. */
    private void report(String verb, long offset, long count, long nanos) {
        double secs = nanos / 1e9;
        report.append(String.format(
                Locale.ROOT,
                "%s %d/%d bytes at offset %d%n%s, 1 ops; %.4f sec%n",
                verb,
                count,
                count,
                offset,
                dev.strata.block.Sizes.human(count),
                secs));
    }
}
