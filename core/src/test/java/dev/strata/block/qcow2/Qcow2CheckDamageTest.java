package dev.strata.block.qcow2;

import static dev.strata.block.qcow2.Qcow2CheckFixture.assertSameReport;
import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Images made by qemu-img and then damaged by editing their metadata bytes: for every damage and
 * every mode (check, {@code -r leaks}, {@code -r all}) Strata must report what {@code qemu-img
 * check} reports, and after a repair both tools must find the two repaired copies in the same
 * state (clean wherever qemu-img's repair makes it clean).
 *
 * <p>Expected numbers are never written here: they come from running qemu-img on the same bytes.
 *
 * <p>Known differences from QEMU 7.2, each marked on the cases it affects ({@link Divergence}):
 *
 * <ul>
 *   <li>{@link Divergence#QEMU_REBUILD_FAILS}: QEMU's refcount rebuild may place a new refcount
 *       block on a cluster the old (broken) refcount table still points to; its own overlap check
 *       then refuses the write and the repair fails ("ERROR writing refblock"). Strata never writes
 *       over the old structure (a crash before the switch must leave it intact), places the block
 *       elsewhere and completes the repair. The test asserts that qemu-img failed and that qemu-img
 *       finds Strata's repaired image clean.
 *   <li>{@link Divergence#BITMAPS_REWRITTEN}: {@code qemu-img check -r} opens the image writable,
 *       which loads the persistent bitmaps and stores them again on close, in new clusters. Strata's
 *       repair leaves bitmaps where they are, so the image end offsets of the two repaired copies
 *       differ; both must be clean.
 *   <li>Always: when QEMU meets a corruption while the image is open writable it marks the image
 *       corrupt on disk ("qcow2: Marking image as corrupt: ..."). Strata's check never sets the
 *       corrupt bit (it is repairing or reporting the image anyway) and prints QEMU's read-only
 *       wording ("qcow2: Image is corrupt: ..."); the comparison maps one line to the other.
 * </ul>
 */
class Qcow2CheckDamageTest {
    static final long COPIED = 1L << 63;
    static final long ZERO = 1L;

    @TempDir
    Path dir;

    /** Builds the undamaged image. */
    @FunctionalInterface
    interface Base {
        void make(Path dir, Path image) throws Exception;
    }

    /** A way the expected outcome knowingly differs from qemu-img's; see the class comment. */
    enum Divergence {
        QEMU_REBUILD_FAILS,
        BITMAPS_REWRITTEN
    }

    /** Damages an image in place. */
    @FunctionalInterface
    interface Damage {
        void apply(Qcow2CheckFixture.Editor e) throws Exception;
    }

    /** 64 MiB, 64 KiB clusters: data at 0-1M and 10M, one cluster discarded (a free hole inside the file). */
    static void plain(Path d, Path p) throws Exception {
        Qcow2CheckCleanTest.create(p, "64M");
        Qcow2CheckCleanTest.io(p, "write -P 1 0 1M", "write -P 2 10M 64k", "discard 512k 64k");
    }

    /** As {@link #plain} plus an internal snapshot, so that clusters are shared (refcount 2). */
    static void withSnapshot(Path d, Path p) throws Exception {
        plain(d, p);
        Interop.qemuImg("snapshot", "-c", "s1", p.toString()).assertOk();
        Qcow2CheckCleanTest.io(p, "write -P 3 128k 64k");
    }

    /** 4 KiB clusters with zero clusters that keep their allocation. */
    static void preallocatedZeros(Path d, Path p) throws Exception {
        Qcow2CheckCleanTest.create(p, "16M", "-o", "cluster_size=4096");
        Qcow2CheckCleanTest.io(p, "write -P 1 0 256k", "write -z 64k 16k");
    }

    static void compressed(Path d, Path p) throws Exception {
        Path raw = d.resolve("src.raw");
        Interop.qemuImg("create", "-f", "raw", raw.toString(), "16M").assertOk();
        Interop.qemuIo("-f", "raw", "-c", "write -P 3 0 1M", raw.toString()).assertOk();
        Interop.qemuImg("convert", "-c", "-O", "qcow2", raw.toString(), p.toString())
                .assertOk();
    }

    static void withBitmap(Path d, Path p) throws Exception {
        plain(d, p);
        Interop.qemuImg("bitmap", "--add", p.toString(), "b0").assertOk();
        Qcow2CheckCleanTest.io(p, "write -P 7 20M 1M");
    }

    /** The data cluster behind the first allocated entry of the first L2 table. */
    static long firstDataCluster(Qcow2CheckFixture.Editor e) throws Exception {
        long l2 = e.l2Table(0);
        return (e.l2Entry(l2, e.firstDataEntry(l2)) & 0x00ff_ffff_ffff_fe00L) / e.clusterSize;
    }

    /** A cluster inside the file that nothing uses (the discarded one). */
    static long freeClusterInsideFile(Qcow2CheckFixture.Editor e) throws Exception {
        long clusters = e.size() / e.clusterSize;
        for (long c = 1; c < clusters; c++) {
            if (e.refcount(c) == 0) {
                return c;
            }
        }
        throw new AssertionError("no free cluster inside the file");
    }

    static Arguments damage(String name, Base base, Damage damage, Divergence... divergences) {
        return Arguments.of(name, base, damage, Set.of(divergences));
    }

    static Stream<Arguments> damages() {
        return Stream.of(
                damage("leak: used cluster's refcount raised", Qcow2CheckDamageTest::plain, e -> {
                    e.setRefcount(firstDataCluster(e), 2);
                }),
                damage("leak: free cluster gets a refcount", Qcow2CheckDamageTest::plain, e -> {
                    e.setRefcount(freeClusterInsideFile(e), 1);
                }),
                damage(
                        "leak: several clusters, 1-bit refcounts",
                        (d, p) -> {
                            Qcow2CheckCleanTest.create(p, "64M", "-o", "refcount_bits=1");
                            Qcow2CheckCleanTest.io(p, "write -P 1 0 1M", "discard 128k 192k");
                        },
                        e -> {
                            for (int i = 0; i < 3; i++) {
                                e.setRefcount(freeClusterInsideFile(e), 1);
                            }
                        }),
                damage(
                        "leak: bitmap data cluster's refcount raised",
                        Qcow2CheckDamageTest::withBitmap,
                        e -> e.setRefcount(e.size() / e.clusterSize - 1, 2),
                        Divergence.BITMAPS_REWRITTEN),
                damage("refcount too low: used cluster has refcount 0", Qcow2CheckDamageTest::plain, e -> {
                    e.setRefcount(firstDataCluster(e), 0);
                }),
                damage("refcount too low: shared cluster has refcount 1", Qcow2CheckDamageTest::withSnapshot, e -> {
                    long l2 = e.l2Table(0);
                    for (int i = 0; ; i++) {
                        long c = (e.l2Entry(l2, i) & 0x00ff_ffff_ffff_fe00L) / e.clusterSize;
                        if (c != 0 && e.refcount(c) == 2) {
                            e.setRefcount(c, 1);
                            return;
                        }
                    }
                }),
                damage("leak: L2 table's refcount raised", Qcow2CheckDamageTest::withSnapshot, e -> {
                    long c = e.l2Table(0) / e.clusterSize;
                    e.setRefcount(c, e.refcount(c) + 1);
                }),
                damage("L2 entry points past the end of the file", Qcow2CheckDamageTest::plain, e -> {
                    long l2 = e.l2Table(0);
                    e.setL2Entry(l2, e.firstDataEntry(l2) + 3, COPIED | 0x1000_0000L);
                }),
                damage("L1 entry points past the end of the file", Qcow2CheckDamageTest::plain, e -> {
                    e.setL1Entry(0, COPIED | 0x4000_0000L);
                }),
                damage("misaligned L2 table offset", Qcow2CheckDamageTest::plain, e -> {
                    e.setL1Entry(0, COPIED | (e.l2Table(0) + 0x200));
                }),
                damage("misaligned data cluster offset", Qcow2CheckDamageTest::plain, e -> {
                    long l2 = e.l2Table(0);
                    int i = e.firstDataEntry(l2);
                    e.setL2Entry(l2, i, e.l2Entry(l2, i) + 0x200);
                }),
                damage("misaligned preallocated zero cluster", Qcow2CheckDamageTest::preallocatedZeros, e -> {
                    long l2 = e.l2Table(0);
                    for (int i = 0; ; i++) {
                        long entry = e.l2Entry(l2, i);
                        if ((entry & ZERO) != 0 && (entry & 0x00ff_ffff_ffff_fe00L) != 0) {
                            e.setL2Entry(l2, i, entry + 0x200);
                            return;
                        }
                    }
                }),
                damage("L1 entry overlaps the refcount table", Qcow2CheckDamageTest::plain, e -> {
                    e.setL1Entry(0, COPIED | e.header.refcountTableOffset());
                }),
                damage("L2 table placed on the refcount block", Qcow2CheckDamageTest::plain, e -> {
                    e.setL1Entry(0, COPIED | (e.reftableEntry(0) & ~0x1ffL));
                }),
                damage("data cluster placed on the L1 table", Qcow2CheckDamageTest::plain, e -> {
                    long l2 = e.l2Table(0);
                    e.setL2Entry(l2, e.firstDataEntry(l2) + 1, COPIED | e.header.l1TableOffset());
                }),
                damage("data cluster placed on the header", Qcow2CheckDamageTest::plain, e -> {
                    long l2 = e.l2Table(0);
                    e.setL2Entry(l2, e.firstDataEntry(l2) + 1, COPIED | 0x200L);
                }),
                damage("COPIED flag missing on L1 and L2 entries", Qcow2CheckDamageTest::plain, e -> {
                    long l2 = e.l2Table(0);
                    int i = e.firstDataEntry(l2);
                    e.setL2Entry(l2, i, e.l2Entry(l2, i) & ~COPIED);
                    e.setL1Entry(0, e.l1Entry(0) & ~COPIED);
                }),
                damage("COPIED flag set on a shared cluster", Qcow2CheckDamageTest::withSnapshot, e -> {
                    long l2 = e.l2Table(0);
                    for (int i = 0; ; i++) {
                        long entry = e.l2Entry(l2, i);
                        long c = (entry & 0x00ff_ffff_ffff_fe00L) / e.clusterSize;
                        if (c != 0 && e.refcount(c) == 2) {
                            e.setL2Entry(l2, i, entry | COPIED);
                            return;
                        }
                    }
                }),
                damage("refcount block outside the image", Qcow2CheckDamageTest::plain, e -> {
                    e.setReftableEntry(1, (e.size() / e.clusterSize + 10) * e.clusterSize);
                }),
                damage(
                        "refcount table entry with reserved bits",
                        Qcow2CheckDamageTest::plain,
                        e -> e.setReftableEntry(0, e.reftableEntry(0) | 0x10),
                        Divergence.QEMU_REBUILD_FAILS),
                damage(
                        "refcount block at an unaligned offset",
                        Qcow2CheckDamageTest::plain,
                        e -> e.setReftableEntry(0, e.reftableEntry(0) + 0x200),
                        Divergence.QEMU_REBUILD_FAILS),
                damage("refcount table entry cleared", Qcow2CheckDamageTest::plain, e -> {
                    e.setReftableEntry(0, 0);
                }),
                damage("reserved bits in L1 and L2 entries", Qcow2CheckDamageTest::plain, e -> {
                    long l2 = e.l2Table(0);
                    int i = e.firstDataEntry(l2);
                    e.setL2Entry(l2, i, e.l2Entry(l2, i) | 0x2);
                    e.setL1Entry(0, e.l1Entry(0) | 0x1);
                }),
                damage("compressed cluster with COPIED flag", Qcow2CheckDamageTest::compressed, e -> {
                    long l2 = e.l2Table(0);
                    e.setL2Entry(l2, 2, e.l2Entry(l2, 2) | COPIED);
                }),
                damage("compressed cluster's refcount too low", Qcow2CheckDamageTest::compressed, e -> {
                    long l2 = e.l2Table(0);
                    long coffset = e.l2Entry(l2, 0) & ((1L << 54) - 1);
                    e.setRefcount(coffset / e.clusterSize, 0);
                }),
                damage(
                        "dirty image with lazy refcounts (qemu-io abort)",
                        (d, p) -> {
                            Qcow2CheckCleanTest.create(p, "64M", "-o", "lazy_refcounts=on");
                            Qcow2CheckCleanTest.io(p, "write -P 1 0 64k");
                            Interop.qemuIo("-c", "write -P 2 1M 256k", "-c", "abort", p.toString());
                        },
                        e -> {}));
    }

    @ParameterizedTest(name = "{0}: check")
    @MethodSource("damages")
    void check(String name, Base base, Damage damage, Set<Divergence> known) throws Exception {
        differential(base, damage, Qcow2Check.RepairMode.NONE, known);
    }

    @ParameterizedTest(name = "{0}: -r leaks")
    @MethodSource("damages")
    void repairLeaks(String name, Base base, Damage damage, Set<Divergence> known) throws Exception {
        differential(base, damage, Qcow2Check.RepairMode.LEAKS, known);
    }

    @ParameterizedTest(name = "{0}: -r all")
    @MethodSource("damages")
    void repairAll(String name, Base base, Damage damage, Set<Divergence> known) throws Exception {
        differential(base, damage, Qcow2Check.RepairMode.ALL, known);
    }

    private void differential(Base base, Damage damage, Qcow2Check.RepairMode mode, Set<Divergence> known)
            throws Exception {
        Interop.require("qemu-img");
        Path image = dir.resolve("damaged.qcow2");
        base.make(dir, image);
        try (Qcow2CheckFixture.Editor e = new Qcow2CheckFixture.Editor(image)) {
            damage.apply(e);
        }
        Path qemuCopy = dir.resolve("q.qcow2");
        Path strataCopy = dir.resolve("s.qcow2");
        Qcow2CheckFixture.Report qemu = Qcow2CheckFixture.qemu(image, mode, qemuCopy);
        Qcow2CheckFixture.Report strata = Qcow2CheckFixture.strata(image, mode, strataCopy);
        if (mode == Qcow2Check.RepairMode.ALL && known.contains(Divergence.QEMU_REBUILD_FAILS)) {
            assertThat(qemu.exitCode()).as("qemu-img gives up").isEqualTo(1);
            assertThat(qemu.stderr()).contains("qemu-img: Check failed: Input/output error");
            Qcow2CheckFixture.Report verdict = Qcow2CheckFixture.qemuAsIs(strataCopy);
            assertThat(verdict.exitCode())
                    .as("qemu-img on Strata's repair: %s", verdict.stderr())
                    .isZero();
            assertThat(strata.exitCode()).isZero();
            assertThat(strata.json()).containsKey("corruptions-fixed");
            assertThat(Qcow2CheckFixture.strataAsIs(strataCopy).json()).isEqualTo(verdict.json());
            return;
        }
        assertSameReport(strata, qemu, true);
        if (mode == Qcow2Check.RepairMode.NONE) {
            assertThat(Files.readAllBytes(strataCopy))
                    .as("a check without -r writes nothing")
                    .isEqualTo(Files.readAllBytes(image));
            return;
        }
        // both repaired copies: each tool judges both the same way, and the two repairs agree
        Qcow2CheckFixture.Report qemuOnStrata = Qcow2CheckFixture.qemuAsIs(strataCopy);
        Qcow2CheckFixture.Report qemuOnQemu = Qcow2CheckFixture.qemuAsIs(qemuCopy);
        Qcow2CheckFixture.Report strataOnStrata = Qcow2CheckFixture.strataAsIs(strataCopy);
        Qcow2CheckFixture.Report strataOnQemu = Qcow2CheckFixture.strataAsIs(qemuCopy);
        assertThat(strataOnStrata.json()).as("Strata on its repair").isEqualTo(qemuOnStrata.json());
        assertThat(strataOnQemu.json()).as("Strata on qemu-img's repair").isEqualTo(qemuOnQemu.json());
        assertThat(qemuOnStrata.exitCode()).isEqualTo(qemuOnQemu.exitCode());
        if (known.contains(Divergence.BITMAPS_REWRITTEN)) {
            assertThat(withoutEndOffset(qemuOnStrata.json())).isEqualTo(withoutEndOffset(qemuOnQemu.json()));
        } else {
            assertThat(qemuOnStrata.json()).as("qemu-img on both repairs").isEqualTo(qemuOnQemu.json());
        }
        if (qemuOnQemu.exitCode() == 0) {
            assertThat(strataOnStrata.exitCode()).as("clean after repair").isZero();
        }
    }

    private static Map<String, Object> withoutEndOffset(Map<String, Object> json) {
        Map<String, Object> m = new LinkedHashMap<>(json);
        m.remove("image-end-offset");
        return m;
    }
}
