package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Seeded random damage: metadata words of QEMU-made images (header fields, L1, L2, refcount
 * table and block entries, snapshot and bitmap structures) are overwritten with values chosen to
 * hit the interesting cases (zero, aligned and unaligned offsets inside and past the file, flag
 * bits, garbage), and Strata's check and repair must report exactly what qemu-img reports. Each
 * failure names its seed and round, from which the image is rebuilt.
 *
 * <p>Rounds where Strata knowingly differs from QEMU 7.2 ({@link #knownDivergence}) are held to a
 * weaker rule: the check completes, and qemu-img and Strata then judge Strata's result the same.
 * The differences, each recognised from qemu-img's own output or the damaged header:
 *
 * <ul>
 *   <li>QEMU rewrites a snapshot table with broken entries during {@code -r all}; Strata reports
 *       them and leaves the table alone.
 *   <li>QEMU 7.2 opened for repair rewrites the header of an image with unknown autoclear bits (or
 *       a stale bitmaps extension) from its check-mode state, in which the snapshots were never
 *       loaded: the snapshot table is dropped and its clusters freed as leaks. Strata keeps it.
 *   <li>QEMU 7.2's overlap check with the bitmaps autoclear bit set but no bitmaps extension sees
 *       an empty bitmap directory at offset 0 that every write overlaps, so its repairs fail.
 *   <li>QEMU's rebuild may choose a cluster the old refcount table still points to and then fail
 *       its own overlap check; Strata places the block elsewhere.
 *   <li>QEMU opened for repair marks the image corrupt when it meets a refcount block at an
 *       unaligned offset and then can no longer write it; Strata rebuilds the refcount structure.
 *   <li>QEMU rewrites the COPIED flags of an "L2 table" at a misaligned offset in place, over
 *       whatever lies there; Strata reports them and does not write.
 * </ul>
 */
class Qcow2CheckRandomDamageTest {
    private static final int ROUNDS = Integer.getInteger("strata.rounds", 60);

    @TempDir
    Path dir;

    /** Where the metadata lies in a base image: the offsets of words worth damaging. */
    private static List<Long> metadataWords(Qcow2CheckFixture.Editor e) throws Exception {
        List<Long> words = new ArrayList<>();
        Qcow2Header h = e.header;
        for (long off = 8; off < 104; off += 4) {
            words.add(off);
        }
        for (int i = 0; i < Math.max(1, h.l1Size()); i++) {
            words.add(h.l1TableOffset() + 8L * i);
        }
        for (int i = 0; i < h.l1Size(); i++) {
            long l2 = e.l2Table(i);
            if (l2 != 0) {
                for (int j = 0; j < 64; j++) {
                    words.add(l2 + 8L * j);
                }
            }
        }
        for (int i = 0; i < 4; i++) {
            words.add(h.refcountTableOffset() + 8L * i);
        }
        long rb = e.reftableEntry(0) & ~0x1ffL;
        for (int i = 0; i < 64; i++) {
            words.add(rb + 8L * i);
        }
        if (h.nbSnapshots() > 0) {
            for (int i = 0; i < 8; i++) {
                words.add(h.snapshotsOffset() + 8L * i);
            }
        }
        for (var ext : h.bitmaps().stream().toList()) {
            for (int i = 0; i < 6; i++) {
                words.add(ext.directoryOffset() + 8L * i);
            }
        }
        return words;
    }

    private static long value(Random rnd, long old, long fileSize, int clusterSize) {
        long cluster = fileSize / clusterSize;
        return switch (rnd.nextInt(10)) {
            case 0 -> 0;
            case 1 -> old ^ (1L << rnd.nextInt(64));
            case 2 -> (1L << 63) | (long) rnd.nextInt((int) cluster + 4) * clusterSize;
            case 3 -> (long) rnd.nextInt((int) cluster + 4) * clusterSize;
            case 4 -> old + 512;
            case 5 -> old + clusterSize;
            case 6 -> old | 1;
            case 7 -> (1L << 62) | rnd.nextLong() & ((1L << 62) - 1);
            case 8 -> rnd.nextLong();
            default -> old & ~(1L << 63);
        };
    }

    private void makeBase(int kind, Path p) throws Exception {
        switch (kind) {
            case 0 -> Qcow2CheckDamageTest.plain(dir, p);
            case 1 -> Qcow2CheckDamageTest.withSnapshot(dir, p);
            case 2 -> Qcow2CheckDamageTest.withBitmap(dir, p);
            case 3 -> Qcow2CheckDamageTest.compressed(dir, p);
            default -> Qcow2CheckDamageTest.preallocatedZeros(dir, p);
        }
    }

    @Test
    void randomDamageIsJudgedAndRepairedLikeQemuImg() throws Exception {
        Interop.require("qemu-img");
        long seed = Long.getLong("strata.seed", 20240611L);
        Random rnd = new Random(seed);
        List<String> failures = new ArrayList<>();
        diverged = 0;
        for (int round = 0; round < ROUNDS; round++) {
            int kind = round % 5;
            Path base = dir.resolve("base-" + kind + ".qcow2");
            if (!Files.exists(base)) {
                makeBase(kind, base);
            }
            Path image = dir.resolve("damaged.qcow2");
            Files.copy(base, image, StandardCopyOption.REPLACE_EXISTING);
            StringBuilder what = new StringBuilder();
            try (Qcow2CheckFixture.Editor e = new Qcow2CheckFixture.Editor(image)) {
                List<Long> words = metadataWords(e);
                int n = 1 + rnd.nextInt(3);
                for (int i = 0; i < n; i++) {
                    long at = words.get(rnd.nextInt(words.size()));
                    long v = value(rnd, e.readLong(at), e.size(), e.clusterSize);
                    e.writeLong(at, v);
                    what.append(String.format(" [0x%x]=0x%x", at, v));
                }
            }
            // the bitmaps of an image opened for repair are rewritten by QEMU: compare repairs elsewhere
            Qcow2Check.RepairMode mode =
                    kind == 2 ? Qcow2Check.RepairMode.NONE : Qcow2Check.RepairMode.values()[round % 3];
            String context = "seed " + seed + " round " + round + " base " + kind + " -r " + mode + ":" + what;
            Qcow2CheckFixture.Report qemu = Qcow2CheckFixture.qemu(image, mode, dir.resolve("q.qcow2"));
            Path repaired = dir.resolve("s.qcow2");
            Qcow2CheckFixture.Report strata = Qcow2CheckFixture.strata(image, mode, repaired);
            try {
                String divergence = knownDivergence(image, mode, qemu);
                if (divergence == null) {
                    Qcow2CheckFixture.assertSameReport(
                            strata, qemu, qemu.stderr().size() < Qcow2CheckLog.LIMIT);
                } else {
                    diverged++;
                    Qcow2CheckFixture.Report qemuVerdict = Qcow2CheckFixture.qemuAsIs(repaired);
                    Qcow2CheckFixture.Report strataVerdict = Qcow2CheckFixture.strataAsIs(repaired);
                    assertThat(strataVerdict.json()).as(divergence).isEqualTo(qemuVerdict.json());
                    assertThat(strataVerdict.exitCode()).as(divergence).isEqualTo(qemuVerdict.exitCode());
                }
            } catch (AssertionError err) {
                failures.add(context + "\n" + err.getMessage());
            }
        }
        assertThat(failures).as("rounds where Strata and qemu-img disagree").isEmpty();
        assertThat(diverged).as("rounds with a known difference").isLessThan(ROUNDS / 2);
    }

    private int diverged;

    /** Which known difference from QEMU 7.2 applies to this round, or null. */
    private static String knownDivergence(Path image, Qcow2Check.RepairMode mode, Qcow2CheckFixture.Report qemu)
            throws Exception {
        if (mode == Qcow2Check.RepairMode.NONE) {
            return null;
        }
        String err = String.join("\n", qemu.stderr());
        Qcow2Header h;
        boolean misalignedL2 = false;
        try (Qcow2CheckFixture.Editor e = new Qcow2CheckFixture.Editor(image)) {
            h = e.header;
            for (int i = 0; i < Math.min(h.l1Size(), 64); i++) {
                misalignedL2 |= (e.l1Entry(i) & 0x00ff_ffff_ffff_fe00L) % e.clusterSize != 0;
            }
        } catch (Exception ex) {
            return null;
        }
        boolean unknownAutoclear =
                (h.autoclearFeatures() & ~(Qcow2Header.AUTOCLEAR_BITMAPS | Qcow2Header.AUTOCLEAR_DATA_FILE_RAW)) != 0;
        boolean staleBitmaps = h.extension(Qcow2Header.EXT_BITMAPS).isPresent()
                && (h.autoclearFeatures() & Qcow2Header.AUTOCLEAR_BITMAPS) == 0;
        if (h.nbSnapshots() != 0 && (unknownAutoclear || staleBitmaps)) {
            return "QEMU drops the snapshots while rewriting the header";
        }
        if (mode == Qcow2Check.RepairMode.ALL
                && (err.contains("Repairing snapshot table entry")
                        || err.contains("overhanging snapshots")
                        || err.contains("Discarding too much extra metadata")
                        || err.contains("ERROR failed to update snapshot table"))) {
            return "QEMU rewrites the snapshot table";
        }
        if (err.contains("overlaps with bitmap directory")
                && h.extension(Qcow2Header.EXT_BITMAPS).isEmpty()) {
            return "QEMU's overlap check sees an empty bitmap directory everywhere";
        }
        if (mode == Qcow2Check.RepairMode.ALL && err.contains("unaligned (reftable index")) {
            return "QEMU stops working on an image it marked corrupt";
        }
        if (err.contains("ERROR writing refblock") || err.contains("ERROR writing reftable")) {
            return "QEMU's rebuild lands on the old refcount structure";
        }
        if (misalignedL2 && err.contains("Repairing OFLAG_COPIED data cluster")) {
            return "QEMU rewrites a misaligned L2 table in place";
        }
        return null;
    }
}
