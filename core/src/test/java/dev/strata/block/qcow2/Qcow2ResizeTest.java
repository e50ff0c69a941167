package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * qcow2 resize in Strata against a raw model and against qemu-img resize on copies of the same
 * image: after every resize {@code qemu-img check} is clean, {@code qemu-img info} reports the new
 * size and {@code qemu-img compare} finds the image equal to the model.
 */
class Qcow2ResizeTest {
    private static final long MiB = 1 << 20;

    @TempDir
    Path dir;

    @BeforeEach
    void tools() {
        Interop.require("qemu-img");
        Interop.require("qemu-io");
    }

    private Path create(String name, String opts, long size) throws Exception {
        Path p = dir.resolve(name);
        Interop.qemuImg("create", "-q", "-f", "qcow2", "-o", opts, p.toString(), Long.toString(size))
                .assertOk();
        return p;
    }

    static void io(Path image, String... commands) throws Exception {
        List<String> args = new ArrayList<>(List.of("-f", "qcow2"));
        for (String c : commands) {
            args.addAll(List.of("-c", c));
        }
        args.add(image.toString());
        Interop.Result r = Interop.qemuIo(args.toArray(String[]::new)).assertOk();
        assertThat(r.stdout()).as("qemu-io %s", List.of(commands)).doesNotContain("failed");
    }

    static void resize(Path image, long newSize) throws IOException {
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(image.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            n.truncate(newSize);
            assertThat(n.length()).isEqualTo(newSize);
        }
    }

    static long virtualSize(Path image) throws Exception {
        String out = Interop.qemuImg("info", "--output=json", image.toString())
                .assertOk()
                .stdout();
        return Long.parseLong(out.replaceAll("(?s).*\"virtual-size\": (\\d+).*", "$1"));
    }

    private void assertImage(Path image, byte[] model, String what) throws Exception {
        Images.assertCheckClean(image, what);
        assertThat(virtualSize(image))
                .as("%s: qemu-img info's virtual size", what)
                .isEqualTo(model.length);
        Images.assertSameAs(image, model, dir, what);
    }

    private static int[] header(Path image) throws IOException {
        ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(image));
        return new int[] {b.getInt(36), (int) b.getLong(40)};
    }

    @ParameterizedTest(name = "cluster {0}, compat {1}")
    @CsvSource({"512, 1.1", "4096, 1.1", "65536, 1.1", "65536, 0.10", "2097152, 1.1", "4096, 0.10"})
    void seededResizesAndWritesMatchARawModel(int clusterSize, String compat) throws Exception {
        long seed = System.nanoTime();
        SplittableRandom rnd = new SplittableRandom(seed);
        Path image = create("m.qcow2", "cluster_size=" + clusterSize + ",compat=" + compat, 3 * MiB);
        io(image, "write -P 0x11 0 700k", "write -P 0x22 2M 1M", "write -z 1M 64k");
        byte[] model = Images.qemuRaw(image, dir);
        for (int step = 0; step < 14; step++) {
            String what = "seed " + seed + ", step " + step + ", cluster " + clusterSize + ", compat " + compat;
            int pick = rnd.nextInt(3);
            try (BlockGraph g = Drivers.newGraph();
                    BlockNode n = g.openImage(image.toString(), "qcow2", OpenFlags.READ_WRITE)) {
                if (pick == 0 || model.length == 0) {
                    // sizes around L2 and cluster boundaries, some not cluster-aligned
                    long newSize = 512L * rnd.nextLong(8 * MiB / 512 + 1);
                    n.truncate(newSize);
                    model = Arrays.copyOf(model, (int) newSize);
                    what += ", resize to " + newSize;
                } else {
                    long off = rnd.nextLong(model.length);
                    int len = (int) Math.min(1 + rnd.nextInt(300_000), model.length - off);
                    byte[] data = new byte[len];
                    if (pick == 1) {
                        Arrays.fill(data, (byte) (step + 1));
                        n.write(off, ByteBuffer.wrap(data));
                    } else {
                        n.writeZeroes(off, len, rnd.nextBoolean());
                    }
                    System.arraycopy(data, 0, model, (int) off, len);
                    what += (pick == 1 ? ", write " : ", zero ") + off + "+" + len;
                }
                assertThat(Images.readAll(n))
                        .as("%s: Strata reads the model", what)
                        .isEqualTo(model);
            }
            assertImage(image, model, what);
        }
    }

    @Test
    void growPastAnL1TableBoundaryMovesTheL1TableAsQemuDoes() throws Exception {
        // 512-byte clusters: an L2 table maps 32 KiB, so 64 MiB need 2048 L1 entries (16 KiB)
        Path s = create("s.qcow2", "cluster_size=512", 64 * MiB);
        io(s, "write -P 1 0 64k", "write -P 2 63M 1M");
        Path q = dir.resolve("q.qcow2");
        Files.copy(s, q);
        byte[] model = Images.qemuRaw(s, dir);
        int[] before = header(s);
        for (long size : new long[] {128 * MiB, 129 * MiB}) {
            resize(s, size);
            Interop.qemuImg("resize", q.toString(), Long.toString(size)).assertOk();
            model = Arrays.copyOf(model, (int) size);
            assertImage(s, model, "grow to " + size);
            assertThat(header(s)[0])
                    .as("l1_size after growing to %d", size)
                    .isEqualTo(header(q)[0])
                    .isEqualTo((int) (size / (32 * 1024)));
        }
        assertThat(header(s)[1]).as("the L1 table moved").isNotEqualTo(before[1]);
        // the new area is usable: a write at the very end lands and reads back
        try (BlockGraph g = Drivers.newGraph();
                BlockNode n = g.openImage(s.toString(), "qcow2", OpenFlags.READ_WRITE)) {
            byte[] data = new byte[3 * 1024];
            Arrays.fill(data, (byte) 9);
            n.write(129 * MiB - data.length, ByteBuffer.wrap(data));
            System.arraycopy(data, 0, model, (int) (129 * MiB - data.length), data.length);
        }
        assertImage(s, model, "write at the end of the grown image");
    }

    @Test
    void shrinkFreesWhatLiesPastTheEndAndCutsTheFileAsQemuDoes() throws Exception {
        Path s = create("s.qcow2", "cluster_size=65536", 64 * MiB);
        io(s, "write -P 1 0 1M", "write -P 2 31M 2M", "write -P 3 60M 4M", "write -z 40M 1M");
        Path q = dir.resolve("q.qcow2");
        Files.copy(s, q);
        byte[] model = Arrays.copyOf(Images.qemuRaw(s, dir), (int) (32 * MiB - 512));
        resize(s, 32 * MiB - 512);
        Interop.qemuImg("resize", "--shrink", q.toString(), Long.toString(32 * MiB - 512))
                .assertOk();
        assertImage(s, model, "shrink");
        assertThat(Files.size(s)).as("file length after the shrink").isEqualTo(Files.size(q));
        assertThat(map(s)).isEqualTo(map(q));
        assertThat(header(s)[0]).as("the L1 table keeps its size").isEqualTo(header(q)[0]);
    }

    private static String map(Path image) throws Exception {
        return Interop.qemuImg("map", "--output=json", image.toString())
                .assertOk()
                .stdout()
                .replace(image.toString(), "IMG");
    }

    @ParameterizedTest(name = "overlay of {0} bytes")
    @CsvSource({"2097152", "1049088"})
    void aLongerBackingFileDoesNotShowThroughTheNewArea(long overlaySize) throws Exception {
        Path base = create("base.qcow2", "cluster_size=65536", 8 * MiB);
        io(base, "write -P 5 0 8M");
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-b",
                        "base.qcow2",
                        "-F",
                        "qcow2",
                        dir.resolve("s.qcow2").toString(),
                        Long.toString(overlaySize))
                .assertOk();
        Path s = dir.resolve("s.qcow2");
        Path q = dir.resolve("q.qcow2");
        Files.copy(s, q);
        resize(s, 6 * MiB);
        Interop.qemuImg("resize", q.toString(), "6M").assertOk();
        Images.assertCheckClean(s, "grown overlay");
        assertThat(Interop.qemuImg("compare", s.toString(), q.toString()).exitCode())
                .as("Strata's grown overlay reads as QEMU's")
                .isZero();
        assertThat(map(s)).as("qemu-img map of the grown overlay").isEqualTo(map(q));
        byte[] expected = new byte[(int) (6 * MiB)];
        Arrays.fill(expected, 0, (int) overlaySize, (byte) 5);
        assertThat(Images.qemuRaw(s, dir)).isEqualTo(expected);
    }

    @Test
    void refusalsUseQemusWordsAndChangeNothing() throws Exception {
        Path v2 = create("v2.qcow2", "compat=0.10", 4 * MiB);
        Interop.qemuImg("snapshot", "-c", "s1", v2.toString()).assertOk();
        assertRefused(v2, 8 * MiB, "Can't resize a v2 image which has snapshots");

        Path a = create("a.qcow2", "cluster_size=65536", 4 * MiB);
        assertRefused(a, 4 * MiB + 1, "The new size must be a multiple of 512");
        assertRefused(a, 3L << 50, "Failed to grow the L1 table: File too large");

        Path base = create("base.qcow2", "cluster_size=65536", 8 * MiB);
        Interop.qemuImg(
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-o",
                        "compat=0.10",
                        "-b",
                        "base.qcow2",
                        "-F",
                        "qcow2",
                        dir.resolve("o.qcow2").toString(),
                        "2M")
                .assertOk();
        assertRefused(dir.resolve("o.qcow2"), 6 * MiB, "Failed to zero out new clusters: Operation not supported");
    }

    private void assertRefused(Path image, long newSize, String message) throws Exception {
        long before = virtualSize(image);
        Path q = dir.resolve("refused-q.qcow2");
        Files.copy(image, q, StandardCopyOption.REPLACE_EXISTING);
        assertThatThrownBy(() -> resize(image, newSize)).hasMessage(message);
        assertThat(Interop.qemuImg("resize", "--shrink", q.toString(), Long.toString(newSize))
                        .stderr())
                .as("qemu-img's refusal")
                .isEqualTo("qemu-img: " + message + "\n");
        Images.assertCheckClean(image, "after the refusal");
        assertThat(virtualSize(image)).isEqualTo(before);
    }

    @Test
    void internalSnapshotsKeepTheirDataThroughShrinkAndGrow() throws Exception {
        Path s = create("s.qcow2", "cluster_size=4096", 4 * MiB);
        io(s, "write -P 1 0 4M");
        Interop.qemuImg("snapshot", "-c", "s1", s.toString()).assertOk();
        byte[] snapshot = Images.qemuRaw(s, dir);
        resize(s, MiB);
        resize(s, 6 * MiB);
        byte[] model = new byte[(int) (6 * MiB)];
        Arrays.fill(model, 0, (int) MiB, (byte) 1);
        assertImage(s, model, "active layer");
        Path raw = dir.resolve("snap.raw");
        Interop.qemuImg("convert", "-l", "snapshot.name=s1", "-O", "raw", s.toString(), raw.toString())
                .assertOk();
        // qemu-img convert -l reads a snapshot at the active layer's size (QEMU's own resize gives the same)
        assertThat(Files.readAllBytes(raw)).as("snapshot s1 reads as before").isEqualTo(Arrays.copyOf(snapshot, (int)
                (6 * MiB)));
    }

    @Test
    void compressedClustersPastTheEndAreFreed() throws Exception {
        Path src = create("src.qcow2", "cluster_size=4096", 4 * MiB);
        io(src, "write -P 1 0 4M");
        Path s = dir.resolve("c.qcow2");
        Interop.qemuImg("convert", "-c", "-O", "qcow2", "-o", "cluster_size=4096", src.toString(), s.toString())
                .assertOk();
        byte[] model = Arrays.copyOf(Images.qemuRaw(s, dir), (int) (MiB + 4096 + 512));
        resize(s, model.length);
        assertImage(s, model, "shrunk compressed image");
    }

    /**
     * Strata does better than QEMU 7.2 here: after a shrink to a size inside a cluster and a grow,
     * QEMU shows the data the shrink cut off again; Strata zeroes the old tail when it grows.
     */
    @Test
    void dataCutOffByAShrinkNeverReappears() throws Exception {
        Path s = create("s.qcow2", "cluster_size=65536", 4 * MiB);
        io(s, "write -P 7 0 4M");
        Path q = dir.resolve("q.qcow2");
        Files.copy(s, q);
        long cut = MiB + 512;
        resize(s, cut);
        resize(s, 4 * MiB);
        byte[] model = new byte[(int) (4 * MiB)];
        Arrays.fill(model, 0, (int) cut, (byte) 7);
        assertImage(s, model, "shrink then grow");

        Interop.qemuImg("resize", "--shrink", q.toString(), Long.toString(cut)).assertOk();
        Interop.qemuImg("resize", q.toString(), "4M").assertOk();
        assertThat(Interop.qemuIo("-c", "read -P 7 " + cut + " 512", q.toString())
                        .stdout())
                .as("QEMU 7.2 reads the old data again")
                .doesNotContain("failed");
    }
}
