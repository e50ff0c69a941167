package dev.strata.block.qcow2;

import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class ScratchReplayTest {
    @Test
    void replay() throws Exception {
        Path d = Path.of(System.getenv("REPLAY_DIR"));
        long watch = Long.parseLong(System.getenv("REPLAY_BYTE"));
        String[] args = Files.readString(d.resolve("args.txt")).trim().split(" ");
        long seed = Long.parseLong(args[0]);
        long first = Long.parseLong(args[1]);
        long done = Files.readAllLines(d.resolve("log.txt")).stream().filter(l -> l.startsWith("D ")).count();
        Path image = d.resolve("replay.qcow2");
        Files.copy(d.resolve("before.qcow2"), image, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        SplittableRandom rnd = new SplittableRandom(seed);
        ByteBuffer buf = ByteBuffer.allocate(1 << 20);
        byte[] one = new byte[1];
        try (var graph = Drivers.newGraph()) {
            BlockNode node = graph.openImage(image.toString(), "qcow2", OpenFlags.READ_WRITE);
            long size = node.length();
            for (long i = first; i < first + done + 1; i++) {
                int kindPick = rnd.nextInt(10);
                String kind = kindPick < 7 ? "W" : kindPick < 9 ? "Z" : "T";
                long length = 1 + rnd.nextInt(kind.equals("W") ? 256 * 1024 : 512 * 1024);
                long offset = rnd.nextLong(size - length);
                boolean unmap = false;
                switch (kind) {
                    case "W" -> {
                        buf.clear().limit((int) length);
                        for (int k = 0; k < length; k++) buf.put(k, CrashWriter.pattern(i, offset + k));
                        node.write(offset, buf);
                    }
                    case "Z" -> { unmap = rnd.nextBoolean(); node.writeZeroes(offset, length, unmap); }
                    default -> node.discard(offset, length);
                }
                node.read(watch, one, 0, 1);
                System.out.printf("op %d %s %d %d unmap=%s -> byte 0x%02x%n", i, kind, offset, length, unmap, one[0]);
            }
        }
    }
}
