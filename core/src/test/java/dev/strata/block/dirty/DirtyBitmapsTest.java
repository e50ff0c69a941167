package dev.strata.block.dirty;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.util.BitSet;
import java.util.HexFormat;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The bitmap rules of QEMU's bitmaps.rst and QAPI, and dirty tracking against a chunk model. */
class DirtyBitmapsTest {
    private static final long MiB = 1 << 20;

    @Test
    void addRefusesWhatQemuRefuses() throws BitmapException {
        DirtyBitmaps bitmaps = new DirtyBitmaps();
        assertThatThrownBy(() -> bitmaps.add("", MiB, 65536, false)).hasMessage("Bitmap name cannot be empty");
        assertThatThrownBy(() -> bitmaps.add("b", MiB, 1000, false))
                .hasMessage("Granularity must be power of 2 and at least 512");
        assertThatThrownBy(() -> bitmaps.add("b", MiB, 256, false))
                .hasMessage("Granularity must be power of 2 and at least 512");
        bitmaps.add("bitmap0", MiB, 65536, false);
        assertThatThrownBy(() -> bitmaps.add("bitmap0", MiB, 65536, false))
                .hasMessage("Bitmap already exists: bitmap0");
        String longName = "x".repeat(1024);
        assertThatThrownBy(() -> bitmaps.add(longName, MiB, 65536, false))
                .hasMessage("Bitmap name too long: " + longName);
        bitmaps.add("y".repeat(1023), MiB, 65536, false);
        assertThat(bitmaps.all()).extracting(DirtyBitmap::name).containsExactly("y".repeat(1023), "bitmap0");
    }

    @Test
    void defaultGranularityIsTheClusterSizeClamped() {
        assertThat(DirtyBitmaps.defaultGranularity(512)).isEqualTo(4096);
        assertThat(DirtyBitmaps.defaultGranularity(65536)).isEqualTo(65536);
        assertThat(DirtyBitmaps.defaultGranularity(2 << 20)).isEqualTo(65536);
        assertThat(DirtyBitmaps.defaultGranularity(16384)).isEqualTo(16384);
        assertThat(DirtyBitmaps.defaultGranularity(0)).isEqualTo(65536);
    }

    @Test
    void writesAreRoundedOutToWholeChunksAndCountedInBytes() throws BitmapException {
        DirtyBitmaps bitmaps = new DirtyBitmaps();
        DirtyBitmap b = bitmaps.add("b", 10 * 65536 + 100, 65536, false);
        bitmaps.markDirty(65535, 2); // touches chunks 0 and 1
        assertThat(b.count()).isEqualTo(2 * 65536);
        // a short last chunk counts a whole granularity, as qemu-storage-daemon 7.2 reports it
        // (QEMU's HBitmap counts chunks; the QAPI digest's "bounded by the disk size" is not so)
        bitmaps.markDirty(10 * 65536 + 50, 10);
        assertThat(b.count()).isEqualTo(3 * 65536);
        assertThat(b.nextDirty(0)).isZero();
        assertThat(b.nextClean(0)).isEqualTo(2 * 65536);
        assertThat(b.nextDirty(2 * 65536)).isEqualTo(10 * 65536);
    }

    @Test
    void disabledBitmapsDoNotRecordAndEnableStartsAgain() throws BitmapException {
        DirtyBitmaps bitmaps = new DirtyBitmaps();
        DirtyBitmap b = bitmaps.add("b", MiB, 65536, true);
        assertThat(b.recording()).isFalse();
        bitmaps.markDirty(0, 4096);
        assertThat(b.count()).isZero();
        bitmaps.enable("b");
        bitmaps.markDirty(0, 4096);
        assertThat(b.count()).isEqualTo(65536);
        bitmaps.disable("b");
        bitmaps.markDirty(MiB / 2, 1);
        assertThat(b.count()).isEqualTo(65536);
        bitmaps.clear("b");
        assertThat(b.count()).isZero();
        assertThatThrownBy(() -> bitmaps.enable("nope")).hasMessage("Dirty bitmap 'nope' not found");
    }

    @Test
    void successorRecordsWhileTheParentIsFrozenAndAbdicateKeepsOnlyNewWrites() throws BitmapException {
        DirtyBitmaps bitmaps = new DirtyBitmaps();
        DirtyBitmap parent = bitmaps.add("bitmap0", MiB, 65536, false);
        bitmaps.markDirty(0, 65536);
        DirtyBitmap successor = bitmaps.createSuccessor(parent);
        assertThat(parent.busy()).isTrue();
        assertThat(parent.recording())
                .as("frozen but recording through its successor")
                .isTrue();
        assertThat(parent.enabled()).isFalse();
        assertThat(bitmaps.all()).containsExactly(successor, parent);

        bitmaps.markDirty(65536 * 3, 1);
        assertThat(parent.count()).isEqualTo(65536);
        assertThat(successor.count()).isEqualTo(65536);

        String busy = "Bitmap 'bitmap0' is currently in use by another operation and cannot be used";
        assertThatThrownBy(() -> bitmaps.clear("bitmap0")).hasMessage(busy);
        assertThatThrownBy(() -> bitmaps.remove("bitmap0")).hasMessage(busy);
        assertThatThrownBy(() -> bitmaps.disable("bitmap0")).hasMessage(busy);
        assertThatThrownBy(() -> bitmaps.merge(parent, List.of())).hasMessage(busy);
        assertThatThrownBy(() -> bitmaps.createSuccessor(parent))
                .hasMessage("Cannot create a successor for a bitmap that already has one");

        DirtyBitmap after = bitmaps.abdicate(parent);
        assertThat(after).isSameAs(successor);
        assertThat(after.name()).isEqualTo("bitmap0");
        assertThat(after.busy()).isFalse();
        assertThat(bitmaps.all()).containsExactly(after);
        assertThat(after.nextDirty(0)).isEqualTo(65536 * 3);
    }

    @Test
    void reclaimGivesBackEveryBitAndTheRecordingState() throws BitmapException {
        DirtyBitmaps bitmaps = new DirtyBitmaps();
        DirtyBitmap parent = bitmaps.add("bitmap0", MiB, 65536, false);
        bitmaps.markDirty(0, 65536);
        bitmaps.createSuccessor(parent);
        bitmaps.markDirty(5 * 65536, 1);
        DirtyBitmap back = bitmaps.reclaim(parent);
        assertThat(back).isSameAs(parent);
        assertThat(parent.busy()).isFalse();
        assertThat(parent.enabled()).isTrue();
        assertThat(parent.count()).isEqualTo(2 * 65536);
        assertThat(bitmaps.all()).containsExactly(parent);
    }

    @Test
    void mergeChecksEverythingFirstAndMixesGranularities() throws BitmapException {
        DirtyBitmaps a = new DirtyBitmaps();
        DirtyBitmaps other = new DirtyBitmaps();
        DirtyBitmap target = a.add("t", MiB, 65536, false);
        DirtyBitmap fine = other.add("fine", MiB, 4096, false);
        DirtyBitmap small = other.add("small", MiB / 2, 65536, false);
        other.markDirty(70000, 10);
        a.markDirty(0, 1);
        assertThatThrownBy(() -> a.merge(target, List.of(fine, small)))
                .hasMessage(
                        "Bitmaps are of different sizes (destination size is 1048576, source size is 524288) and can't be merged");
        assertThat(target.count()).as("a refused merge changes nothing").isEqualTo(65536);
        a.merge(target, List.of(fine));
        assertThat(target.count()).isEqualTo(2 * 65536);
        assertThat(target.isDirty(65536)).isTrue();
    }

    @Test
    void resizeKeepsBitsBelowTheEndAndStartsTheNewAreaClean() throws BitmapException {
        DirtyBitmaps bitmaps = new DirtyBitmaps();
        DirtyBitmap b = bitmaps.add("b", MiB, 65536, false);
        bitmaps.markDirty(MiB - 1, 1);
        bitmaps.markDirty(0, 1);
        bitmaps.resize(4 * MiB);
        assertThat(b.count()).isEqualTo(2 * 65536);
        assertThat(b.nextDirty(MiB)).isEqualTo(-1);
        bitmaps.markDirty(3 * MiB, 1);
        assertThat(b.nextDirty(MiB)).isEqualTo(3 * MiB);
        bitmaps.resize(MiB / 2);
        assertThat(b.count()).isEqualTo(65536);
        assertThat(b.length()).isEqualTo(MiB / 2);
    }

    @Test
    void sha256HashesTheLeafWordsLittleEndian() throws Exception {
        DirtyBitmaps bitmaps = new DirtyBitmaps();
        long length = 100L * 65536; // 100 chunks: two words
        DirtyBitmap b = bitmaps.add("b", length, 65536, false);
        bitmaps.markDirty(0, 1);
        bitmaps.markDirty(65 * 65536, 3 * 65536);
        ByteBuffer words = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        words.putLong(0, 1L);
        words.putLong(8, 0b1110L);
        String expected =
                HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(words.array()));
        assertThat(b.sha256()).isEqualTo(expected);
    }

    @ParameterizedTest(name = "granularity {0}, length {1}")
    @CsvSource({"512, 1048576", "4096, 4194305", "65536, 16777216", "65536, 1000"})
    void randomMarkingMatchesAChunkModel(long granularity, long length) throws BitmapException {
        long seed = System.nanoTime();
        SplittableRandom rnd = new SplittableRandom(seed);
        DirtyBitmaps bitmaps = new DirtyBitmaps();
        DirtyBitmap b = bitmaps.add("b", length, granularity, false);
        BitSet chunks = new BitSet();
        for (int op = 0; op < 300; op++) {
            long off = rnd.nextLong(length);
            long len = 1 + rnd.nextLong(Math.min(length - off, 8 * granularity + 1));
            if (rnd.nextInt(4) == 0) {
                b.resetDirty(off, len);
                chunks.clear((int) (off / granularity), (int) ((off + len + granularity - 1) / granularity));
            } else {
                bitmaps.markDirty(off, len);
                chunks.set((int) (off / granularity), (int) ((off + len + granularity - 1) / granularity));
            }
            long expectedBytes = chunks.cardinality() * granularity;
            assertThat(b.count()).as("seed %d op %d", seed, op).isEqualTo(expectedBytes);
            long probe = rnd.nextLong(length);
            int next = chunks.nextSetBit((int) (probe / granularity));
            long expectNext =
                    next < 0 || (long) next * granularity >= length ? -1 : Math.max(probe, next * granularity);
            assertThat(b.nextDirty(probe))
                    .as("seed %d op %d nextDirty(%d)", seed, op, probe)
                    .isEqualTo(expectNext);
        }
    }
}
