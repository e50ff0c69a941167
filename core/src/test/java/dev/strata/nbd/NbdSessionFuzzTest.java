package dev.strata.nbd;

import static org.assertj.core.api.Assertions.assertThat;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.BufferPool;
import dev.strata.block.drivers.Drivers;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/**
 * Fuzzes the NBD option and request parsers with arbitrary client bytes against a writable and a
 * read-only export of a null-co node with a bitmap: the session ends only by the stream ending or
 * a protocol violation (never another exception), no request is left in flight, and the output is
 * bounded by what the input could ask for. Regression mode in CI; {@code JAZZER_FUZZ=1} to search.
 */
class NbdSessionFuzzTest {
    static final long SIZE = 1 << 20;
    static BlockGraph graph;
    static BlockNode node;
    static Handshake.Exports exports;
    static final BufferPool BUFFERS = new BufferPool(16, 64L << 20);

    @BeforeAll
    static void setUp() throws Exception {
        graph = Drivers.newGraph();
        node = graph.add(BlockOptions.parseKeyValue(
                "driver=null-co,node-name=null0,size=" + SIZE + ",read-zeroes=on", "driver"));
        node.bitmaps().add("bitmap0", SIZE, 512, false);
        Export rw = new Export(
                "rw", "", null, node, true, List.of(node.bitmaps().lookup("bitmap0")), true, true, SIZE, true);
        Export ro = new Export("ro", "ro", "read only", node, false, List.of(), false, false, SIZE, true);
        exports = new Handshake.Exports() {
            @Override
            public Export find(String name) {
                return name.equals("") ? rw : name.equals("ro") ? ro : null;
            }

            @Override
            public List<Export> list() {
                return List.of(rw, ro);
            }
        };
    }

    @AfterAll
    static void tearDown() throws IOException {
        graph.close();
    }

    /** Client bytes in, server bytes counted. */
    static final class FuzzChannel implements ByteChannel {
        private final ByteBuffer input;
        long written;
        private boolean open = true;

        FuzzChannel(byte[] input) {
            this.input = ByteBuffer.wrap(input);
        }

        @Override
        public int read(ByteBuffer dst) {
            if (!input.hasRemaining()) {
                return -1;
            }
            int n = Math.min(dst.remaining(), input.remaining());
            ByteBuffer slice = input.slice(input.position(), n);
            dst.put(slice);
            input.position(input.position() + n);
            return n;
        }

        @Override
        public int write(ByteBuffer src) {
            int n = src.remaining();
            src.position(src.limit());
            written += n;
            return n;
        }

        @Override
        public boolean isOpen() {
            return open;
        }

        @Override
        public void close() {
            open = false;
        }
    }

    @FuzzTest(maxDuration = "20s")
    void anyClientBytesEndInEofOrAViolation(FuzzedDataProvider data) throws IOException {
        byte[] input = data.consumeRemainingAsBytes();
        FuzzChannel channel = new FuzzChannel(input);
        Wire wire = new Wire(channel);
        try {
            Handshake.Agreed agreed = new Handshake(wire, exports).run();
            if (agreed != null) {
                new Transmission(wire, agreed, BUFFERS).run();
            }
        } catch (EOFException | Handshake.Violation expected) {
            // the two ways a session may end on bad or short input
        }
        assertThat(node.inFlight()).isZero();
        // every 28-byte request can ask for at most the whole device back, or a bounded list
        long bound = 4096 + input.length * 64L + (input.length / 28 + 1) * (SIZE + 8 * 4096);
        assertThat(channel.written).isLessThanOrEqualTo(bound);
    }
}
