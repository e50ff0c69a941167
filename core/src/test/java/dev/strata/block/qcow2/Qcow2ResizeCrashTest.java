package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.block.BlockDriver;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A crash at any instant of a resize leaves a valid image: every write a resize makes to the host
 * file is recorded in order, and the file as it would be after each prefix of them (what a SIGKILL
 * leaves: completed writes stay, nothing after the last one lands) must pass {@code qemu-img check}
 * without corruption (leaks allowed), have the old or the new size, and read the data the resize
 * keeps. Long resizes are cut at their first and last writes and at points spread between.
 */
class Qcow2ResizeCrashTest {
    private static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    /** One change to the host file: bytes at an offset, or a truncation (data null). */
    private record Op(long offset, byte[] data) {}

    /** A protocol driver over a "file" child that records every write and truncation it passes on. */
    private static final class JournalFile implements BlockDriver {
        private final BlockNode file;
        private final List<Op> ops = Collections.synchronizedList(new ArrayList<>());

        JournalFile(BlockNode file) {
            this.file = file;
        }

        @Override
        public String format() {
            return "journal";
        }

        @Override
        public long length() throws IOException {
            return file.length();
        }

        @Override
        public boolean growable() {
            return true;
        }

        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            file.read(offset, dst);
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            byte[] b = new byte[src.remaining()];
            src.get(src.position(), b);
            ops.add(new Op(offset, b));
            file.write(offset, src);
        }

        @Override
        public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
            ops.add(new Op(offset, new byte[Math.toIntExact(length)]));
            file.writeZeroes(offset, length, mayUnmap);
        }

        @Override
        public void discard(long offset, long length) {}

        @Override
        public void flush() throws IOException {
            file.flush();
        }

        @Override
        public List<Extent> blockStatus(long offset, long length) throws IOException {
            return file.blockStatus(offset, length);
        }

        @Override
        public void truncate(long newLength) throws IOException {
            ops.add(new Op(newLength, null));
            file.truncate(newLength);
        }

        @Override
        public Map<String, BlockNode> children() {
            return Map.of("file", file);
        }

        @Override
        public boolean readOnly() {
            return file.readOnly();
        }

        @Override
        public void close() {}
    }

    @ParameterizedTest
    @ValueSource(
            strings = {
                "grow the L1 table (512-byte clusters)",
                "shrink over many L2 tables",
                "grow over a longer backing file",
                "shrink an image with a snapshot"
            })
    void aCrashAnywhereInAResizeLeavesAValidImage(String scenario) throws Exception {
        Interop.require("qemu-img");
        Interop.require("qemu-io");
        Path image = dir.resolve("img.qcow2");
        long oldSize;
        long newSize;
        switch (scenario) {
            case "grow the L1 table (512-byte clusters)" -> {
                oldSize = 8 * MiB;
                newSize = 24 * MiB;
                create(image, "cluster_size=512", oldSize, null);
                Qcow2ResizeTest.io(image, "write -P 1 0 64k", "write -P 2 7M 1M");
            }
            case "shrink over many L2 tables" -> {
                oldSize = 64 * MiB;
                newSize = 3 * MiB + 512;
                create(image, "cluster_size=4096", oldSize, null);
                Qcow2ResizeTest.io(image, "write -P 1 0 4M", "write -P 2 10M 2M", "write -P 3 60M 4M");
            }
            case "grow over a longer backing file" -> {
                oldSize = 2 * MiB + 512;
                newSize = 12 * MiB;
                Path base = dir.resolve("base.qcow2");
                create(base, "cluster_size=65536", 16 * MiB, null);
                Qcow2ResizeTest.io(base, "write -P 5 0 16M");
                create(image, "cluster_size=65536", oldSize, "base.qcow2");
                Qcow2ResizeTest.io(image, "write -P 6 1M 64k");
            }
            default -> {
                oldSize = 8 * MiB;
                newSize = MiB;
                create(image, "cluster_size=4096", oldSize, null);
                Qcow2ResizeTest.io(image, "write -P 1 0 8M");
                Interop.qemuImg("snapshot", "-c", "s1", image.toString()).assertOk();
                Qcow2ResizeTest.io(image, "write -P 2 4M 2M");
            }
        }
        byte[] before = Files.readAllBytes(image);
        byte[] data = Images.qemuRaw(image, dir);

        List<Op> ops = resizeThroughJournal(image, newSize);
        assertThat(ops).as("the resize wrote something").isNotEmpty();
        Images.assertCheckClean(image, scenario + ": after the whole resize");

        long kept = Math.min(oldSize, newSize);
        for (int k : crashPoints(ops.size())) {
            String what = scenario + ": crash after " + k + " of " + ops.size() + " writes";
            Path crashed = dir.resolve("crashed.qcow2");
            Files.write(crashed, before);
            try (RandomAccessFile f = new RandomAccessFile(crashed.toFile(), "rw")) {
                for (Op op : ops.subList(0, k)) {
                    if (op.data() == null) {
                        f.setLength(op.offset());
                    } else {
                        f.seek(op.offset());
                        f.write(op.data());
                    }
                }
            }
            Interop.Result check = Interop.qemuImg("check", "--output=json", crashed.toString());
            JsonNode report = new ObjectMapper().readTree(check.stdout());
            assertThat(report.path("corruptions").asInt(0))
                    .as("%s: %s", what, check.stdout())
                    .isZero();
            assertThat(check.exitCode())
                    .as("%s: %s%s", what, check.stdout(), check.stderr())
                    .isIn(0, 3);
            byte[] raw = Images.qemuRaw(crashed, dir);
            assertThat((long) raw.length).as("%s: the size", what).isIn(oldSize, newSize);
            assertThat(Arrays.copyOf(raw, (int) kept))
                    .as("%s: the data the resize keeps", what)
                    .isEqualTo(Arrays.copyOf(data, (int) kept));
            if (raw.length > oldSize) {
                assertThat(Arrays.copyOfRange(raw, (int) oldSize, raw.length))
                        .as("%s: the new area reads as zeros", what)
                        .containsOnly(0);
            }
        }
    }

    /**
     * Where to crash: after every one of the first and last 20 writes (the metadata switches), and
     * at 40 evenly spaced points between (the runs of refcount updates).
     */
    private static java.util.SortedSet<Integer> crashPoints(int writes) {
        java.util.SortedSet<Integer> points = new java.util.TreeSet<>();
        for (int k = 0; k <= Math.min(20, writes); k++) {
            points.add(k);
            points.add(writes - k);
        }
        for (int i = 1; i < 40; i++) {
            points.add((int) ((long) writes * i / 40));
        }
        return points;
    }

    private static void create(Path image, String opts, long size, String backing) throws Exception {
        List<String> args = new ArrayList<>(List.of("create", "-q", "-f", "qcow2", "-o", opts));
        if (backing != null) {
            args.addAll(List.of("-b", backing, "-F", "qcow2"));
        }
        args.addAll(List.of(image.toString(), Long.toString(size)));
        Interop.qemuImg(args.toArray(String[]::new)).assertOk();
    }

    private static List<Op> resizeThroughJournal(Path image, long newSize) throws IOException {
        JournalFile[] journal = new JournalFile[1];
        try (BlockGraph g = Drivers.newGraph()) {
            g.register("journal", (o, ctx) -> {
                journal[0] = new JournalFile(ctx.openChild(o, "file", ctx.flags()));
                return journal[0];
            });
            BlockNode node = g.add(BlockOptions.empty()
                    .put("driver", "qcow2")
                    .put("node-name", "img")
                    .put(
                            "file",
                            BlockOptions.empty()
                                    .put("driver", "journal")
                                    .put(
                                            "file",
                                            BlockOptions.empty()
                                                    .put("driver", "file")
                                                    .put("filename", image.toString()))));
            journal[0].ops.clear();
            node.truncate(newSize);
            List<Op> ops = List.copyOf(journal[0].ops);
            g.remove("img");
            return ops;
        }
    }
}
