package dev.strata.block.blkdebug;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * blkdebug as the seed's error examples use it: a format node over a blkdebug node over a file,
 * requests failing with the injected errno after the rule's event, in QEMU's words.
 */
class BlkdebugTest {
    @TempDir
    Path dir;

    private Path raw;

    @BeforeEach
    void image() throws Exception {
        raw = dir.resolve("disk.raw");
        try (RandomAccessFile f = new RandomAccessFile(raw.toFile(), "rw")) {
            f.setLength(1 << 20);
        }
    }

    private BlockOptions rawOverBlkdebug(String rules) {
        return BlockOptions.parseKeyValue(
                "driver=raw,node-name=d0,file.driver=blkdebug,file.image.driver=file,file.image.filename=" + raw
                        + (rules.isEmpty() ? "" : "," + rules),
                null);
    }

    private static void write(BlockNode n, long offset, int len, int pattern) throws Exception {
        byte[] b = new byte[len];
        Arrays.fill(b, (byte) pattern);
        n.write(offset, ByteBuffer.wrap(b));
    }

    private static byte[] read(BlockNode n, long offset, int len) throws Exception {
        ByteBuffer b = ByteBuffer.allocate(len);
        n.read(offset, b);
        return b.array();
    }

    @Test
    void onceRuleFailsTheNextWriteWithItsErrnoThenGoesAway() throws Exception {
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = g.add(rawOverBlkdebug("file.inject-error.0.event=write_aio,file.inject-error.0.errno=28,"
                    + "file.inject-error.0.once=on"));
            assertThatThrownBy(() -> write(n, 0, 4096, 1))
                    .isInstanceOf(BlockException.class)
                    .hasMessage("No space left on device")
                    .satisfies(e -> assertThat(((BlockException) e).errno()).isEqualTo(28));
            write(n, 0, 4096, 2);
            write(n, 4096, 4096, 3);
            assertThat(read(n, 0, 4096)).containsOnly(2);
            assertThat(read(n, 4096, 4096)).containsOnly(3);
        }
    }

    @Test
    void ruleWithoutOnceFailsEveryMatchingRequestAndOnlyThoseOfItsType() throws Exception {
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = g.add(BlockOptions.fromMap(Map.of(
                    "driver",
                    "raw",
                    "node-name",
                    "d0",
                    "file",
                    Map.of(
                            "driver",
                            "blkdebug",
                            "image",
                            Map.of("driver", "file", "filename", raw.toString()),
                            "inject-error",
                            List.of(Map.of("event", "read_aio", "iotype", "read"))))));
            write(n, 0, 512, 7);
            for (int i = 0; i < 3; i++) {
                assertThatThrownBy(() -> read(n, 0, 512)).hasMessage("Input/output error");
            }
            write(n, 512, 512, 8); // writes are not of the rule's type
            n.flush();
        }
    }

    @Test
    void sectorLimitsTheRuleToRequestsContainingThatSector() throws Exception {
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = g.add(rawOverBlkdebug("file.inject-error.0.event=write_aio,file.inject-error.0.sector=16"));
            write(n, 0, 4096, 1); // sectors 0..7
            write(n, 16 * 512 + 512, 512, 1); // sector 17
            assertThatThrownBy(() -> write(n, 4096, 8192, 1)).hasMessage("Input/output error");
        }
    }

    @Test
    void setStateRulesGateInjectRulesByState() throws Exception {
        try (BlockGraph g = Drivers.newGraph()) {
            // state 1 --read_aio--> 2; the error rule fires only on an event seen in state 2
            BlockNode n = g.add(rawOverBlkdebug("file.set-state.0.event=read_aio,file.set-state.0.state=1,"
                    + "file.set-state.0.new_state=2,"
                    + "file.inject-error.0.event=read_aio,file.inject-error.0.state=2,file.inject-error.0.once=on"));
            read(n, 0, 512);
            assertThatThrownBy(() -> read(n, 0, 512)).hasMessage("Input/output error");
            read(n, 0, 512);
        }
    }

    @Test
    void flushRule() throws Exception {
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = g.add(
                    rawOverBlkdebug(
                            "file.inject-error.0.event=flush_to_disk,file.inject-error.0.iotype=flush,file.inject-error.0.errno=5"));
            write(n, 0, 512, 1);
            assertThatThrownBy(n::flush).hasMessage("Input/output error");
        }
    }

    @Test
    void qcow2OverBlkdebugFailsTheDataWriteAndStaysConsistent() throws Exception {
        Interop.require("qemu-img");
        Path q = dir.resolve("t.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", q.toString(), "16M").assertOk();
        try (BlockGraph g = Drivers.newGraph()) {
            BlockNode n = g.add(BlockOptions.parseKeyValue(
                    "driver=qcow2,node-name=t0,file.driver=blkdebug,file.image.driver=file,file.image.filename=" + q
                            + ",file.inject-error.0.event=write_aio,file.inject-error.0.errno=28,"
                            + "file.inject-error.0.once=on",
                    null));
            // the first write_aio activates the rule and its data write fails; nothing points at
            // the cluster it allocated
            assertThatThrownBy(() -> write(n, 0, 65536, 1)).hasMessage("No space left on device");
            assertThat(read(n, 0, 65536)).containsOnly(0);
            for (int i = 0; i < 4; i++) {
                write(n, i * 65536L, 65536, 1 + i);
            }
            for (int i = 0; i < 4; i++) {
                assertThat(read(n, i * 65536L, 65536)).containsOnly(1 + i);
            }
        }
        // no corruption; the cluster of the failed write may leak (exit code 3), as in QEMU
        Interop.Result check = Interop.qemuImg("check", q.toString());
        assertThat(check.exitCode()).as(check.stdout() + check.stderr()).isIn(0, 3);
        assertThat(check.stdout()).doesNotContain("ERROR").doesNotContain("corruptions");
    }

    @Test
    void badRulesAreRefusedWithClearErrors() {
        try (BlockGraph g = Drivers.newGraph()) {
            assertThatThrownBy(() -> g.add(rawOverBlkdebug("file.inject-error.0.event=bogus")))
                    .hasMessageContaining("bogus");
            assertThatThrownBy(() -> g.add(rawOverBlkdebug("file.inject-error.0.errno=5")))
                    .hasMessageContaining("event");
            assertThatThrownBy(() -> g.add(rawOverBlkdebug("file.set-state.0.event=read_aio")))
                    .hasMessageContaining("new_state");
            assertThatThrownBy(
                            () -> g.add(rawOverBlkdebug("file.inject-error.0.event=read_aio,file.inject-error.0.x=1")))
                    .hasMessageContaining("x");
            assertThatThrownBy(() -> g.add(BlockOptions.parseKeyValue("driver=blkdebug,node-name=b", null)))
                    .hasMessageContaining("image");
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }
}
