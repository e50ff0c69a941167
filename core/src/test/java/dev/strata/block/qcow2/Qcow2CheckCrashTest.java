package dev.strata.block.qcow2;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import dev.strata.testing.TestImages;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * A repair killed after any of its writes never makes an image worse. For every damage of {@link
 * Qcow2CheckDamageTest} and both repair modes, the repair is stopped after n writes (every later
 * write fails, as if the process had died there; each write itself is assumed to land whole), for
 * a spread of n from the first write to the last. Then, judged by qemu-img:
 *
 * <ul>
 *   <li>the image still opens and checks (unless it did not before);
 *   <li>no cluster has a refcount below its number of references that did not already have one as
 *       low before the repair started (a too-low refcount is what lets an allocator hand out a
 *       cluster that is still in use); leaks may appear. Clusters past the end of the damaged file
 *       count as having had refcount 0: a repair that grows the file to take in a refcount block
 *       lying past its end (as QEMU's does) makes qemu-img report that same reference as a low
 *       refcount;
 *   <li>the guest data is unchanged ({@code qemu-img compare}), where qemu-img can read it;
 *   <li>running the repair again to its end gives the same image state as a repair never
 *       interrupted.
 * </ul>
 */
class Qcow2CheckCrashTest {
    private static final Pattern LOW = Pattern.compile("^ERROR cluster (\\d+) refcount=(\\d+) reference=(\\d+)$");
    private static final int POINTS = 6;

    @TempDir
    Path dir;

    static Stream<Arguments> cases() {
        return Qcow2CheckDamageTest.damages()
                .flatMap(a -> Stream.of(
                        Arguments.of(a.get()[0], a.get()[1], a.get()[2], Qcow2Check.RepairMode.LEAKS),
                        Arguments.of(a.get()[0], a.get()[1], a.get()[2], Qcow2Check.RepairMode.ALL)));
    }

    @ParameterizedTest(name = "{0}: -r {3}")
    @MethodSource("cases")
    void killedRepairLeavesNoNewDanger(
            String name, Qcow2CheckDamageTest.Base base, Qcow2CheckDamageTest.Damage damage, Qcow2Check.RepairMode mode)
            throws Exception {
        Interop.require("qemu-img");
        Path damaged = dir.resolve("damaged.qcow2");
        base.make(dir, damaged);
        try (Qcow2CheckFixture.Editor e = new Qcow2CheckFixture.Editor(damaged)) {
            damage.apply(e);
        }
        Interop.Result before = Interop.qemuImg("check", damaged.toString());
        Map<Long, Long> lowBefore = lowRefcounts(before.stderr());
        long clustersBefore;
        try (Qcow2CheckFixture.Editor e = new Qcow2CheckFixture.Editor(damaged)) {
            clustersBefore = (e.size() + e.clusterSize - 1) / e.clusterSize;
        }
        boolean readable = Interop.qemuImg("compare", damaged.toString(), damaged.toString())
                        .exitCode()
                == 0;

        Path full = dir.resolve("full.qcow2");
        Files.copy(damaged, full, StandardCopyOption.REPLACE_EXISTING);
        Qcow2CheckImage.Writes counted = new Qcow2CheckImage.Writes(Long.MAX_VALUE);
        runCounted(full, mode, counted);
        long total = counted.count();
        Qcow2CheckFixture.Report finished = Qcow2CheckFixture.qemuAsIs(full);

        for (long n : crashPoints(total)) {
            String at = name + " -r " + mode + ", killed after write " + n + " of " + total;
            Path crashed = dir.resolve("crashed.qcow2");
            Files.copy(damaged, crashed, StandardCopyOption.REPLACE_EXISTING);
            assertThatThrownBy(() -> runCounted(crashed, mode, new Qcow2CheckImage.Writes(n)))
                    .as(at)
                    .isInstanceOf(Qcow2CheckImage.SimulatedCrash.class);

            Interop.Result after = Interop.qemuImg("check", crashed.toString());
            if (before.exitCode() != 1) {
                assertThat(after.exitCode())
                        .as("%s: qemu-img check completes\n%s", at, after.stderr())
                        .isNotEqualTo(1);
            }
            Map<Long, Long> lowAfter = lowRefcounts(after.stderr());
            for (Map.Entry<Long, Long> low : lowAfter.entrySet()) {
                if (low.getKey() >= clustersBefore && !lowBefore.containsKey(low.getKey())) {
                    continue;
                }
                assertThat(lowBefore)
                        .as("%s: cluster %d has a refcount below its references", at, low.getKey())
                        .containsKey(low.getKey());
                assertThat(low.getValue())
                        .as("%s: refcount of cluster %d", at, low.getKey())
                        .isGreaterThanOrEqualTo(lowBefore.get(low.getKey()));
            }
            if (readable) {
                Interop.Result cmp = Interop.qemuImg("compare", damaged.toString(), crashed.toString());
                assertThat(cmp.exitCode())
                        .as("%s: guest data\n%s%s", at, cmp.stdout(), cmp.stderr())
                        .isZero();
            }
            TestImages.check(crashed, mode);
            assertThat(Qcow2CheckFixture.qemuAsIs(crashed).json())
                    .as("%s: repair finished afterwards", at)
                    .isEqualTo(finished.json());
        }
    }

    /** A spread of crash points: the first writes, the last ones and some in between. */
    private static Set<Long> crashPoints(long total) {
        Set<Long> points = new TreeSet<>();
        for (int i = 0; i < POINTS && total > 0; i++) {
            points.add(total * i / POINTS);
        }
        if (total > 0) {
            points.add(total - 1);
        }
        return points;
    }

    /** Clusters qemu-img reports with a refcount below their references, and that refcount. */
    private static Map<Long, Long> lowRefcounts(String stderr) {
        Map<Long, Long> out = new HashMap<>();
        for (String line : stderr.lines().toList()) {
            Matcher m = LOW.matcher(line);
            if (m.matches()) {
                out.put(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)));
            }
        }
        return out;
    }

    /** A repair through the image's file node whose writes {@code writes} counts (and may stop). */
    private static void runCounted(Path image, Qcow2Check.RepairMode mode, Qcow2CheckImage.Writes writes)
            throws IOException {
        try (BlockGraph graph = Drivers.newGraph();
                BlockNode file = TestImages.openFile(graph, image, true)) {
            Qcow2Check.run(file.driver(), image.toString(), mode, Qcow2Check.defaultMemoryBudget(), writes);
        }
    }
}
