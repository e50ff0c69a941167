package dev.strata.block.file;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.Extent;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Strata's block status of a sparse raw file against {@code qemu-img map} of the same file. */
class SparseMapInteropTest {
    private static final int BLOCK = 4096;
    private static final long SIZE = 8L << 20;

    /** One run of the map: where it starts, how long, whether it holds data, its host offset. */
    record Run(long start, long length, boolean data, long offset) {}

    @TempDir
    Path dir;

    @ParameterizedTest
    @ValueSource(longs = {11, 12, 13, 14, 15})
    void blockStatusAgreesWithQemuImgMap(long seed) throws Exception {
        Interop.require("qemu-img");
        Path file = dir.resolve("sparse.raw");
        Files.createFile(file);
        Random rnd = new Random(seed);
        try (FileDriver d = FileDriver.open(file.toString(), false)) {
            d.truncate(SIZE);
            for (int i = 0; i < 60; i++) {
                long off = rnd.nextBoolean() ? (long) rnd.nextInt((int) (SIZE / BLOCK)) * BLOCK : rnd.nextLong(SIZE);
                int len = (int) Math.min(SIZE - off, 1 + rnd.nextInt(16 * BLOCK));
                if (len <= 0) {
                    continue;
                }
                switch (rnd.nextInt(3)) {
                    case 0 -> {
                        byte[] data = new byte[len];
                        rnd.nextBytes(data);
                        d.write(off, ByteBuffer.wrap(data));
                    }
                    case 1 -> d.writeZeroes(off, len, true);
                    default -> d.discard(off, len);
                }
            }
            d.flush();
        }
        List<Run> qemu = qemuImgMap(file);
        List<Run> strata;
        try (BlockGraph graph = Drivers.newGraph()) {
            BlockNode node = graph.openImage(file.toString(), "raw", OpenFlags.READ_ONLY);
            assertThat(node.length()).isEqualTo(SIZE);
            strata = runs(node.blockStatus(0, node.length()));
        }
        // a map that is all data (or all hole) would agree with a broken block status too easily
        assertThat(qemu).as("seed " + seed).anyMatch(Run::data).anyMatch(r -> !r.data());
        assertThat(strata).as("seed " + seed).isEqualTo(qemu);
    }

    private static List<Run> qemuImgMap(Path file) throws Exception {
        String json = Interop.qemuImg("map", "--output=json", "-f", "raw", file.toString())
                .assertOk()
                .stdout();
        List<Run> out = new ArrayList<>();
        for (JsonNode e : new ObjectMapper().readTree(json)) {
            boolean data = e.get("data").asBoolean();
            if (!data) {
                assertThat(e.get("zero").asBoolean())
                        .as("a raw file's hole reads as zeros: " + e)
                        .isTrue();
            }
            add(
                    out,
                    new Run(
                            e.get("start").asLong(),
                            e.get("length").asLong(),
                            data,
                            e.get("offset").asLong()));
        }
        return out;
    }

    private static List<Run> runs(List<Extent> extents) {
        List<Run> out = new ArrayList<>();
        for (Extent e : extents) {
            assertThat(e.kind()).isNotEqualTo(Extent.Kind.UNALLOCATED);
            add(out, new Run(e.offset(), e.length(), e.kind() == Extent.Kind.DATA, e.hostOffset()));
        }
        return out;
    }

    /** Appends, merging with the previous run when both agree and are contiguous (as qemu-img map merges). */
    private static void add(List<Run> out, Run r) {
        if (!out.isEmpty()) {
            Run last = out.getLast();
            if (last.data() == r.data()
                    && last.start() + last.length() == r.start()
                    && last.offset() + last.length() == r.offset()) {
                out.set(out.size() - 1, new Run(last.start(), last.length() + r.length(), last.data(), last.offset()));
                return;
            }
        }
        out.add(r);
    }
}
