package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Test support for the check: runs {@code qemu-img check} and Strata's check on copies of the same
 * image and compares what they report, and edits qcow2 metadata in place to damage images.
 */
final class Qcow2CheckFixture {
    private static final ObjectMapper JSON = new ObjectMapper();

    private Qcow2CheckFixture() {}

    /** What one tool reported: exit code, the JSON object (filename removed), and its text output. */
    record Report(
            int exitCode, Map<String, Object> json, String filename, String human, List<String> stderr, String image) {}

    static String[] repairArgs(Qcow2Check.RepairMode mode) {
        return switch (mode) {
            case NONE -> new String[0];
            case LEAKS -> new String[] {"-r", "leaks"};
            case ALL -> new String[] {"-r", "all"};
        };
    }

    /**
     * Runs qemu-img check twice, on two fresh copies of {@code image} (a repair changes the image,
     * so the JSON and the human run must each start from the damaged one). Returns the JSON run's
     * report with the human run's text; the copy the JSON run repaired is left at {@code
     * repairedCopy}.
     */
    static Report qemu(Path image, Qcow2Check.RepairMode mode, Path repairedCopy) throws Exception {
        Files.copy(image, repairedCopy, StandardCopyOption.REPLACE_EXISTING);
        List<String> args = new ArrayList<>(List.of("check"));
        args.addAll(List.of(repairArgs(mode)));
        args.addAll(List.of("--output=json", repairedCopy.toString()));
        Interop.Result json = Interop.qemuImg(args.toArray(String[]::new));
        Path humanCopy = repairedCopy.resolveSibling(repairedCopy.getFileName() + ".human");
        Files.copy(image, humanCopy, StandardCopyOption.REPLACE_EXISTING);
        List<String> hargs = new ArrayList<>(List.of("check"));
        hargs.addAll(List.of(repairArgs(mode)));
        hargs.add(humanCopy.toString());
        Interop.Result human = Interop.qemuImg(hargs.toArray(String[]::new));
        Files.delete(humanCopy);
        assertThat(human.exitCode()).as("qemu-img human vs json exit").isEqualTo(json.exitCode());
        return qemuReport(json, human.stdout(), repairedCopy);
    }

    /** Runs Strata's check on {@code copy} (a fresh copy of {@code image}). */
    static Report strata(Path image, Qcow2Check.RepairMode mode, Path copy) throws IOException {
        Files.copy(image, copy, StandardCopyOption.REPLACE_EXISTING);
        return report(TestImages.check(copy, mode), copy);
    }

    /** qemu-img check --output=json of an image as it is (no copy, no repair). */
    static Report qemuAsIs(Path image) throws Exception {
        return qemuReport(Interop.qemuImg("check", "--output=json", image.toString()), "", image);
    }

    private static Report qemuReport(Interop.Result json, String human, Path image) throws IOException {
        Map<String, Object> map = parseJson(json.stdout());
        Object filename = map.remove("filename");
        return new Report(
                json.exitCode(),
                map,
                filename == null ? null : filename.toString(),
                human,
                lines(json.stderr()),
                image.toString());
    }

    static Report strataAsIs(Path image) {
        return report(TestImages.check(image, Qcow2Check.RepairMode.NONE), image);
    }

    private static Report report(Qcow2CheckResult r, Path image) {
        Map<String, Object> map = new LinkedHashMap<>(r.toJsonMap());
        Object filename = map.remove("filename");
        return new Report(
                r.exitCode(),
                map,
                filename == null ? null : filename.toString(),
                r.toHumanText(),
                r.diagnostics("qemu-img"),
                image.toString());
    }

    private static Map<String, Object> parseJson(String text) throws IOException {
        if (text.isBlank()) {
            return new LinkedHashMap<>();
        }
        Map<String, Object> raw = JSON.readValue(text, new TypeReference<LinkedHashMap<String, Object>>() {});
        Map<String, Object> out = new LinkedHashMap<>();
        raw.forEach((k, v) -> out.put(k, v instanceof Number n ? (Object) n.longValue() : v));
        return out;
    }

    /**
     * The lines of qemu-img's standard error, with its "image marked corrupt" wording (used when
     * the image is open writable) mapped to the read-only wording Strata always uses.
     */
    private static List<String> lines(String s) {
        return s.lines()
                .map(l -> l.startsWith("qcow2: Marking image as corrupt: ")
                        ? "qcow2: Image is corrupt: "
                                + l.substring("qcow2: Marking image as corrupt: ".length())
                                        .replace(
                                                "; further corruption events will be suppressed",
                                                "; further non-fatal corruption events will be suppressed")
                        : l)
                .toList();
    }

    /** Asserts two reports say the same: exit code, JSON (values and key order), human text, errors. */
    static void assertSameReport(Report strata, Report qemu, boolean compareStderr) {
        assertThat(strata.json())
                .as("JSON report; qemu-img said %s; Strata said %s", head(qemu.stderr()), head(strata.stderr()))
                .containsExactlyEntriesOf(qemu.json());
        assertThat(new ArrayList<>(strata.json().keySet()))
                .as("JSON key order")
                .containsExactlyElementsOf(qemu.json().keySet());
        assertThat(strata.exitCode()).as("exit code").isEqualTo(qemu.exitCode());
        assertThat(strata.human()).as("human report").isEqualTo(qemu.human());
        if (compareStderr) {
            List<String> s = strata.stderr().stream()
                    .map(l -> strata.image() == null ? l : l.replace(strata.image(), "IMAGE"))
                    .toList();
            List<String> q = qemu.stderr().stream()
                    .map(l -> qemu.image() == null ? l : l.replace(qemu.image(), "IMAGE"))
                    .toList();
            if (!s.equals(q)) {
                assertThat(String.join("\n", head(s)))
                        .as("diagnostics (first lines)")
                        .isEqualTo(String.join("\n", head(q)));
                assertThat(s).as("diagnostics").isEqualTo(q);
            }
        }
    }

    private static List<String> head(List<String> lines) {
        return lines.size() <= 30 ? lines : lines.subList(0, 30);
    }

    // ---------------------------------------------------------------------------------------
    // image editing

    /** A qcow2 image opened for editing its metadata with plain positional I/O. */
    static final class Editor implements AutoCloseable {
        final FileChannel ch;
        final Qcow2Header header;
        final int clusterSize;
        final int refcountBits;

        Editor(Path p) throws IOException {
            ch = FileChannel.open(p, StandardOpenOption.READ, StandardOpenOption.WRITE);
            header = Qcow2Header.parse(ch);
            clusterSize = header.clusterSize();
            refcountBits = header.refcountBits();
        }

        long readLong(long offset) throws IOException {
            ByteBuffer b = ByteBuffer.allocate(8);
            ch.read(b, offset);
            return b.getLong(0);
        }

        void writeLong(long offset, long value) throws IOException {
            ch.write(ByteBuffer.allocate(8).putLong(0, value), offset);
        }

        long l1Entry(int i) throws IOException {
            return readLong(header.l1TableOffset() + 8L * i);
        }

        void setL1Entry(int i, long v) throws IOException {
            writeLong(header.l1TableOffset() + 8L * i, v);
        }

        /** Offset of the L2 table the i-th L1 entry points to. */
        long l2Table(int i) throws IOException {
            return l1Entry(i) & 0x00ff_ffff_ffff_fe00L;
        }

        /** Offset of the first L2 table the L1 table points to. */
        long firstL2Table() throws IOException {
            for (int i = 0; i < header.l1Size(); i++) {
                if (l2Table(i) != 0) {
                    return l2Table(i);
                }
            }
            throw new AssertionError("no L2 table");
        }

        long l2Entry(long l2Table, int i) throws IOException {
            return readLong(l2Table + (long) i * (header.hasExtendedL2() ? 16 : 8));
        }

        void setL2Entry(long l2Table, int i, long v) throws IOException {
            writeLong(l2Table + (long) i * (header.hasExtendedL2() ? 16 : 8), v);
        }

        long reftableEntry(int i) throws IOException {
            return readLong(header.refcountTableOffset() + 8L * i);
        }

        void setReftableEntry(int i, long v) throws IOException {
            writeLong(header.refcountTableOffset() + 8L * i, v);
        }

        private long refcountSlot(long cluster, byte[] block) throws IOException {
            long perBlock = clusterSize * 8L / refcountBits;
            long rb = reftableEntry((int) (cluster / perBlock)) & ~0x1ffL;
            ch.read(ByteBuffer.wrap(block), rb);
            return rb;
        }

        long refcount(long cluster) throws IOException {
            byte[] block = new byte[clusterSize];
            refcountSlot(cluster, block);
            long perBlock = clusterSize * 8L / refcountBits;
            return Qcow2CheckRefcounts.decode(
                    block, (int) (cluster % perBlock), Integer.numberOfTrailingZeros(refcountBits));
        }

        void setRefcount(long cluster, long value) throws IOException {
            byte[] block = new byte[clusterSize];
            long rb = refcountSlot(cluster, block);
            long perBlock = clusterSize * 8L / refcountBits;
            Qcow2CheckRefcounts.encode(
                    block, (int) (cluster % perBlock), Integer.numberOfTrailingZeros(refcountBits), value);
            ch.write(ByteBuffer.wrap(block), rb);
        }

        /** The first L2 entry index of table {@code l2} that maps a normal (uncompressed) data cluster. */
        int firstDataEntry(long l2) throws IOException {
            int entries = clusterSize / (header.hasExtendedL2() ? 16 : 8);
            for (int i = 0; i < entries; i++) {
                long e = l2Entry(l2, i);
                if ((e & (1L << 62)) == 0 && (e & 0x00ff_ffff_ffff_fe00L) != 0) {
                    return i;
                }
            }
            throw new AssertionError("no data cluster in L2 table at " + l2);
        }

        long size() throws IOException {
            return ch.size();
        }

        @Override
        public void close() throws IOException {
            ch.close();
        }
    }
}
