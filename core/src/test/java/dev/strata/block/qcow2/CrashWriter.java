package dev.strata.block.qcow2;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import java.nio.ByteBuffer;
import java.util.Random;

/**
 * A child process for {@link Qcow2CrashTest}: writes, zero-writes and discards at random into an
 * image until it is killed. Prints "ready" once the image is open.
 */
public final class CrashWriter {
    private CrashWriter() {}

    public static void main(String[] args) throws Exception {
        String image = args[0];
        Random rnd = new Random(Long.parseLong(args[1]));
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(image, "qcow2", OpenFlags.READ_WRITE)) {
            System.out.println("ready");
            System.out.flush();
            long size = n.length();
            int cs = n.clusterSize();
            ByteBuffer buf = ByteBuffer.allocate(256 << 10);
            while (true) {
                long off = (rnd.nextLong(size) / 512) * 512 + (rnd.nextBoolean() ? 0 : rnd.nextInt(512));
                int len = (int) Math.min(size - off, 1 + rnd.nextInt(rnd.nextBoolean() ? 4 * cs : 256 << 10));
                switch (rnd.nextInt(8)) {
                    case 0 -> n.writeZeroes(off, len, rnd.nextBoolean());
                    case 1 -> n.discard(off, len);
                    default -> {
                        rnd.nextBytes(buf.array());
                        n.write(off, buf.clear().limit(len));
                    }
                }
            }
        }
    }
}
