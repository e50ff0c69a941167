package dev.strata.block.cbw;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.FaultyDisk;
import java.nio.ByteBuffer;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * cbw-timeout: a save that takes longer than the timeout counts as failed, and the guest's write
 * is handled as on-cbw-error says, without waiting for the save. The target is an in-memory disk
 * whose writes are held until the test lets them go: only a stuck target can show a timeout.
 */
class CopyBeforeWriteTimeoutTest {
    @ParameterizedTest
    @ValueSource(strings = {"break-guest-write", "break-snapshot"})
    void aSaveThatOutlastsTheTimeoutFailsAsOnCbwErrorSays(String mode) throws Exception {
        FaultyDisk source = new FaultyDisk(1 << 20);
        FaultyDisk target = new FaultyDisk(1 << 20);
        try (BlockGraph g = Drivers.newGraph()) {
            g.register("source", (o, ctx) -> source).register("target", (o, ctx) -> target);
            BlockNode s = g.add(BlockOptions.empty().put("driver", "source").put("node-name", "s"));
            g.add(BlockOptions.empty().put("driver", "target").put("node-name", "t"));
            g.add(BlockOptions.empty()
                    .put("driver", "copy-before-write")
                    .put("node-name", "cbw")
                    .put("file", "s")
                    .put("target", "t")
                    .put("on-cbw-error", mode)
                    .put("cbw-timeout", 1L));
            BlockNode acc = g.add(BlockOptions.empty()
                    .put("driver", "snapshot-access")
                    .put("node-name", "acc")
                    .put("file", "cbw"));
            target.holdWrites();
            byte[] data = new byte[4096];
            java.util.Arrays.fill(data, (byte) 0x11);
            try {
                if (mode.equals("break-guest-write")) {
                    assertThatThrownBy(() -> s.write(0, data, 0, data.length))
                            .isInstanceOf(BlockException.class)
                            .hasMessage("Connection timed out");
                    // the disk still holds what it held: the write did not happen
                    ByteBuffer b = ByteBuffer.allocate(4096);
                    s.read(0, b);
                    assertThat(b.array()).containsOnly(0);
                } else {
                    s.write(0, data, 0, data.length);
                    assertThatThrownBy(() -> acc.read(65536, ByteBuffer.allocate(512)))
                            .isInstanceOf(BlockException.class)
                            .hasMessage("Permission denied");
                }
            } finally {
                target.releaseWrites();
            }
        }
    }
}
