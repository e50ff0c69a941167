package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Images whose headers and tables make huge or absurd claims. The check must stay bounded (memory
 * from the actual file, not from the claims; no reads outside the file; no endless work) and, where
 * qemu-img copes, report what qemu-img reports.
 */
class Qcow2CheckHostileTest {
    static final long COPIED = 1L << 63;

    @TempDir
    Path dir;

    @FunctionalInterface
    interface Edit {
        void apply(Qcow2CheckFixture.Editor e) throws Exception;
    }

    static void putInt(Qcow2CheckFixture.Editor e, long offset, int v) throws Exception {
        e.ch.write(ByteBuffer.allocate(4).putInt(0, v), offset);
    }

    static Stream<Arguments> claims() {
        return Stream.of(
                Arguments.of("65536 snapshots of zeros past the end of the file", (Edit) e -> {
                    putInt(e, 60, 65536);
                    e.writeLong(64, 0x20_0000L);
                }),
                Arguments.of("2^32-1 snapshots", (Edit) e -> {
                    putInt(e, 60, -1);
                    e.writeLong(64, 0x20_0000L);
                }),
                Arguments.of("snapshot table at a misaligned offset", (Edit) e -> {
                    putInt(e, 60, 1);
                    e.writeLong(64, 0x20_0200L);
                }),
                Arguments.of("L1 table of the maximum size over the whole file", (Edit) e -> putInt(e, 36, 1 << 22)),
                Arguments.of("L1 table one entry over the maximum", (Edit) e -> putInt(e, 36, (1 << 22) + 1)),
                Arguments.of("L1 table at QEMU's maximum offset", (Edit) e -> e.writeLong(40, 0x7fff_ffff_ffff_0000L)),
                Arguments.of("L1 table just below QEMU's maximum offset", (Edit)
                        e -> e.writeLong(40, 0x7fff_ffff_bfff_0000L)),
                Arguments.of("refcount table just below QEMU's maximum offset", (Edit)
                        e -> e.writeLong(48, 0x7fff_ffff_bfff_0000L)),
                Arguments.of("refcount table of the maximum size", (Edit) e -> putInt(e, 56, 128)),
                Arguments.of("refcount table too large", (Edit) e -> putInt(e, 56, 129)),
                Arguments.of("refcount table with zero clusters", (Edit) e -> putInt(e, 56, 0)),
                Arguments.of("refcount block at 2^62", (Edit) e -> e.setReftableEntry(1, 1L << 62)),
                Arguments.of("L2 entries with every offset bit set", (Edit) e -> {
                    long l2 = e.l2Table(0);
                    for (int i = 0; i < 64; i++) {
                        e.setL2Entry(l2, i, COPIED | 0x00ff_ffff_ffff_0000L);
                    }
                }),
                Arguments.of("compressed entries with maximal sizes", (Edit) e -> {
                    long l2 = e.l2Table(0);
                    for (int i = 0; i < 64; i++) {
                        e.setL2Entry(l2, i, (1L << 62) | ~(3L << 62) & -1L);
                    }
                }),
                Arguments.of("every L1 entry points at the same L2 table", (Edit) e -> {
                    long l2 = e.l1Entry(0);
                    int entries = e.header.l1Size();
                    for (int i = 0; i < entries; i++) {
                        e.setL1Entry(i, l2);
                    }
                    putInt(e, 36, e.clusterSize / 8);
                    for (int i = entries; i < e.clusterSize / 8; i++) {
                        e.setL1Entry(i, l2);
                    }
                }));
    }

    /** 64 MiB, 64 KiB clusters, some data, one free cluster inside the file. */
    private Path base() throws Exception {
        Path p = dir.resolve("img.qcow2");
        Qcow2CheckDamageTest.plain(dir, p);
        return p;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("claims")
    void boundedAndLikeQemuImg(String name, Edit edit) throws Exception {
        Interop.require("qemu-img");
        Path image = base();
        try (Qcow2CheckFixture.Editor e = new Qcow2CheckFixture.Editor(image)) {
            edit.apply(e);
        }
        // qemu-img needs many seconds per run on the two heaviest images: check them without -r only
        boolean heavy = name.startsWith("L1 table of the maximum size") || name.startsWith("every L1 entry");
        for (Qcow2Check.RepairMode mode :
                heavy ? new Qcow2Check.RepairMode[] {Qcow2Check.RepairMode.NONE} : Qcow2Check.RepairMode.values()) {
            Qcow2CheckFixture.Report qemu = Qcow2CheckFixture.qemu(image, mode, dir.resolve("q.qcow2"));
            Qcow2CheckFixture.Report strata = Qcow2CheckFixture.strata(image, mode, dir.resolve("s.qcow2"));
            // the log keeps its first lines; beyond that only the counts can be compared
            boolean fullLog = qemu.stderr().size() < Qcow2CheckLog.LIMIT;
            if (name.contains("snapshots") && mode == Qcow2Check.RepairMode.ALL) {
                // QEMU rewrites a snapshot table with incomplete entries (and fails here: its new
                // table would overlap the old one, which lies past the end of the file); Strata
                // does not rewrite snapshot tables, so it reports the entries as corruptions
                assertThat(qemu.exitCode()).isEqualTo(1);
                assertThat(qemu.stderr()).contains("qemu-img: Check failed: Input/output error");
                assertThat(strata.exitCode()).isEqualTo(2);
                continue;
            }
            Qcow2CheckFixture.assertSameReport(strata, qemu, fullLog);
        }
    }

    @Test
    void l1PointingMillionsOfTimesAtOneL2TableStopsEarly() throws Exception {
        Interop.require("qemu-img");
        // 2 MiB clusters: one L1 cluster holds 262144 entries, each naming the same 2 MiB L2 table
        Path image = dir.resolve("loop.qcow2");
        Qcow2CheckCleanTest.create(image, "64M", "-o", "cluster_size=2M");
        Qcow2CheckCleanTest.io(image, "write -P 1 0 4M");
        try (Qcow2CheckFixture.Editor e = new Qcow2CheckFixture.Editor(image)) {
            long l2 = e.l1Entry(0);
            int entries = e.clusterSize / 8;
            ByteBuffer b = ByteBuffer.allocate(e.clusterSize);
            for (int i = 0; i < entries; i++) {
                b.putLong(l2);
            }
            e.ch.write(b.flip(), e.header.l1TableOffset());
            putInt(e, 36, entries);
        }
        Qcow2CheckResult r = TestImages.check(image, Qcow2Check.RepairMode.NONE);
        assertThat(r.completed()).isFalse();
        assertThat(r.exitCode()).isEqualTo(1);
        assertThat(r.failure()).isEqualTo("Check failed: File too large");
        assertThat(r.diagnostics("strata"))
                .contains("ERROR the L1 tables reference more L2 tables than the image can hold");
    }

    @Test
    void hugeSparseFileIsCheckedInLittleMemory() throws Exception {
        Interop.require("qemu-img");
        Path image = base();
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(1L << 40);
        }
        Qcow2CheckFixture.Report qemu = Qcow2CheckFixture.qemuAsIs(image);
        Qcow2CheckFixture.Report strata = Qcow2CheckFixture.strataAsIs(image);
        assertThat(strata.json()).isEqualTo(qemu.json());
        assertThat(strata.exitCode()).isEqualTo(qemu.exitCode()).isZero();

        // the computed table touches a handful of refcount blocks, whatever the file's size
        Qcow2CheckResult small = TestImages.check(image, image.toString(), Qcow2Check.RepairMode.NONE, 1 << 20);
        assertThat(small.exitCode()).isZero();
        Qcow2CheckResult tiny = TestImages.check(image, image.toString(), Qcow2Check.RepairMode.NONE, 4096);
        assertThat(tiny.completed()).isFalse();
        assertThat(tiny.failure()).isEqualTo("Check failed: Cannot allocate memory");
        assertThat(tiny.exitCode()).isEqualTo(1);
    }

    @Test
    void fileWithMoreClustersThanQemuCountsIsRefused() throws Exception {
        Interop.require("qemu-img");
        Path image = dir.resolve("small-clusters.qcow2");
        Qcow2CheckCleanTest.create(image, "64M", "-o", "cluster_size=512");
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
            // 2^31 clusters of 512 bytes: one more than QEMU's check accepts
            ch.write(ByteBuffer.allocate(1), (1L << 40) - 1);
        }
        Qcow2CheckFixture.Report qemu = Qcow2CheckFixture.qemuAsIs(image);
        Qcow2CheckFixture.Report strata = Qcow2CheckFixture.strataAsIs(image);
        assertThat(strata.exitCode()).isEqualTo(qemu.exitCode()).isEqualTo(1);
        assertThat(strata.stderr()).containsExactlyElementsOf(qemu.stderr());
    }
}
