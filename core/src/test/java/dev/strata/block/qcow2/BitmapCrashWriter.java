package dev.strata.block.qcow2;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * A process that opens a qcow2 image, changes its persistent bitmaps and closes it, over and over,
 * until it is killed, for {@link Qcow2BitmapCrashTest}. Each round: open ("O"), sometimes remove a
 * bitmap ("R name" before, "r name" after), add a persistent bitmap ("A name" once added), write,
 * then close, which stores the bitmaps ("B" before the close, "C" after it).
 */
public final class BitmapCrashWriter {
    private BitmapCrashWriter() {}

    public static void main(String[] args) throws Exception {
        String image = args[0];
        SplittableRandom rnd = new SplittableRandom(Long.parseLong(args[1]));
        int firstRound = Integer.parseInt(args[2]);
        PrintStream out = new PrintStream(System.out, true, java.nio.charset.StandardCharsets.US_ASCII);
        ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
        long[] granularities = {512, 4096, 65536, 1 << 20};
        out.println("ready");
        for (int round = firstRound; ; round++) {
            try (BlockGraph graph = Drivers.newGraph()) {
                BlockNode node = graph.openImage(image, "qcow2", OpenFlags.READ_WRITE);
                out.println("O " + round);
                List<String> names = new ArrayList<>();
                node.bitmaps().all().forEach(b -> {
                    if (b.name() != null) {
                        names.add(b.name());
                    }
                });
                if (!names.isEmpty() && rnd.nextInt(3) == 0) {
                    String victim = names.get(rnd.nextInt(names.size()));
                    out.println("R " + victim);
                    node.bitmaps().remove(victim);
                    out.println("r " + victim);
                }
                String name = "b" + round;
                node.bitmaps().add(name, node.length(), granularities[rnd.nextInt(granularities.length)], false, true);
                out.println("A " + name);
                for (int i = 0; i < 1 + rnd.nextInt(20); i++) {
                    int len = 1 + rnd.nextInt(buf.capacity());
                    buf.clear().limit(len);
                    node.write(rnd.nextLong(node.length() - len), buf);
                }
                out.println("B " + round);
                node.close();
                out.println("C " + round);
            }
        }
    }
}
