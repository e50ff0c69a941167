package dev.strata.block.qcow2;

import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.util.SplittableRandom;

/**
 * A process that writes into a qcow2 image until it is killed, for {@link Qcow2CrashTest}.
 *
 * <p>Each operation is logged on stdout as "B index kind offset length" before it starts and
 * "D index" after it returned, so the test knows which writes were acknowledged and which single
 * one may have been cut short. Data is {@link #pattern}, a function of the operation index and
 * the guest offset, so the test can rebuild the expected disk from the log alone.
 *
 * <p>With a fourth argument {@code writeback} the node's metadata write-back is on (as for a
 * backup's target) and the writer flushes after every 16th operation, logging "F index" once the
 * flush returned: only what was flushed must survive.
 */
public final class CrashWriter {
    private CrashWriter() {}

    public static byte pattern(long opIndex, long guestOffset) {
        // (op, offset) -> x is one-to-one over the test's ranges, and splitmix64's finaliser makes
        // every input bit reach the low byte: two operations (or two offsets) then agree on a byte
        // only by chance, never along a whole run, so stale or misplaced data cannot pass as the
        // expected bytes, and the operation behind any data can be found from its bytes
        long x = opIndex * 0x9E3779B97F4A7C15L + guestOffset;
        x = (x ^ (x >>> 30)) * 0xBF58476D1CE4E5B9L;
        x = (x ^ (x >>> 27)) * 0x94D049BB133111EBL;
        x ^= x >>> 31;
        return (byte) (x | 1); // never zero, so a lost write cannot hide as a zero read
    }

    public static void main(String[] args) throws Exception {
        String image = args[0];
        long seed = Long.parseLong(args[1]);
        long firstIndex = Long.parseLong(args[2]);
        boolean writeback = args.length > 3 && args[3].equals("writeback");
        SplittableRandom rnd = new SplittableRandom(seed);
        PrintStream out = new PrintStream(System.out, false, java.nio.charset.StandardCharsets.US_ASCII);
        ByteBuffer buf = ByteBuffer.allocate(1 << 20);
        try (var graph = Drivers.newGraph()) {
            BlockNode node = graph.openImage(image, "qcow2", OpenFlags.READ_WRITE);
            long size = node.length();
            if (writeback) {
                node.driver().setMetadataWriteback(true);
            }
            out.println("ready");
            out.flush();
            for (long i = firstIndex; ; i++) {
                int kindPick = rnd.nextInt(10);
                String kind = kindPick < 7 ? "W" : kindPick < 9 ? "Z" : "T";
                long length = 1 + rnd.nextInt(kind.equals("W") ? 256 * 1024 : 512 * 1024);
                long offset = rnd.nextLong(size - length);
                out.println("B " + i + " " + kind + " " + offset + " " + length);
                out.flush();
                switch (kind) {
                    case "W" -> {
                        buf.clear().limit((int) length);
                        for (int k = 0; k < length; k++) {
                            buf.put(k, pattern(i, offset + k));
                        }
                        node.write(offset, buf);
                    }
                    case "Z" -> node.writeZeroes(offset, length, rnd.nextBoolean());
                    default -> node.discard(offset, length);
                }
                out.println("D " + i);
                if (writeback && i % 16 == 15) {
                    node.flush();
                    out.println("F " + i);
                }
                out.flush();
            }
        }
    }
}
