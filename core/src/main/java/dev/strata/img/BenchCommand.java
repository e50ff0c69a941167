package dev.strata.img;

import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.OpenFlags;
import dev.strata.block.Sizes;
import dev.strata.block.drivers.Drivers;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code strata img bench}: qemu-img bench's I/O loop over Strata's block layer, with the same
 * flags and output, so the two can be timed side by side on the same image.
 *
 * <p>Requests go out {@code depth} at a time, one virtual thread per slot, each with its own
 * reused direct buffer; offsets advance by the step size and wrap at the end of the image, as in
 * qemu-img.
 */
@Command(
        name = "bench",
        mixinStandardHelpOptions = true,
        description = "Run a simple image benchmark (qemu-img bench).")
final class BenchCommand extends ImgSubcommand {
    @Option(names = "-c", description = "number of requests (default 75000)")
    long count = 75000;

    @Option(names = "-d", description = "requests in flight at once (default 64)")
    int depth = 64;

    @Option(names = "-f", description = "image format (probed when absent)")
    String format;

    @Option(names = "-o", description = "first offset (default 0)")
    String offsetText = "0";

    @Option(names = "-s", description = "bytes per request (default 4096)")
    String bufferSizeText = "4096";

    @Option(names = "-S", description = "distance between requests (default: the buffer size)")
    String stepText;

    @Option(names = "-w", description = "write instead of read")
    boolean write;

    @Option(names = "-q", description = "quiet")
    boolean quiet;

    @Option(names = "-U", description = "open with force-share (read-only runs only)")
    boolean forceShare;

    @Option(names = "--pattern", description = "byte written by -w (default 0)")
    int pattern;

    @Option(names = "--flush-interval", description = "flush after every N writes (0: never)")
    long flushInterval;

    @Option(names = "--no-drain", description = "accepted for compatibility")
    boolean noDrain;

    @Option(
            names = {"-t", "-i", "-n"},
            arity = "0..1",
            hidden = true,
            description = "cache/aio modes: accepted, ignored")
    List<String> ignored = new ArrayList<>();

    @Parameters(index = "0", paramLabel = "FILENAME")
    String filename;

    @Override
    int execute() throws Exception {
        long bufferSize = Sizes.parse(bufferSizeText, "buffer size");
        long step = stepText == null ? bufferSize : Sizes.parse(stepText, "step size");
        long offset = Sizes.parse(offsetText, "offset");
        if (bufferSize <= 0 || bufferSize > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("Invalid buffer size specified");
        }
        if (depth < 1) {
            throw new IllegalArgumentException("Invalid queue depth specified");
        }
        OpenFlags flags = write ? OpenFlags.READ_WRITE : new OpenFlags(true, forceShare);
        try (BlockGraph graph = Drivers.newGraph()) {
            BlockNode node = Images.open(graph, filename, format, flags, true, err());
            long size = node.length();
            if (offset + bufferSize > size) {
                throw new IllegalArgumentException("The first request would reach beyond the end of the image");
            }
            if (!quiet) {
                out().printf(
                                Locale.ROOT,
                                "Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %d, step size %d)%n",
                                count,
                                write ? "write" : "read",
                                bufferSize,
                                depth,
                                offset,
                                step);
            }
            AtomicLong next = new AtomicLong();
            AtomicLong written = new AtomicLong();
            long start = System.nanoTime();
            List<Thread> workers = new ArrayList<>();
            List<Exception> failures = java.util.Collections.synchronizedList(new ArrayList<>());
            for (int slot = 0; slot < Math.min(depth, count); slot++) {
                workers.add(Thread.ofVirtual().start(() -> {
                    ByteBuffer buf = ByteBuffer.allocateDirect((int) bufferSize);
                    if (write) {
                        for (int i = 0; i < bufferSize; i++) {
                            buf.put(i, (byte) pattern);
                        }
                    }
                    try {
                        for (long i; (i = next.getAndIncrement()) < count && failures.isEmpty(); ) {
                            long off = requestOffset(offset, step, bufferSize, size, i);
                            buf.clear();
                            if (write) {
                                node.write(off, buf);
                                if (flushInterval > 0 && written.incrementAndGet() % flushInterval == 0) {
                                    node.flush();
                                }
                            } else {
                                node.read(off, buf);
                            }
                        }
                    } catch (Exception e) {
                        failures.add(e);
                    }
                }));
            }
            for (Thread t : workers) {
                t.join();
            }
            if (!failures.isEmpty()) {
                throw failures.getFirst();
            }
            // like qemu-img bench, the timed run ends when the last request completes; the flush
            // on close is not part of it
            double seconds = (System.nanoTime() - start) / 1e9;
            node.flush();
            node.close();
            if (!quiet) {
                out().printf(Locale.ROOT, "Run completed in %.3f seconds.%n", seconds);
            }
        }
        return 0;
    }

    /** The i-th request's offset: advancing by step from the start, wrapping to 0 at the end of the image. */
    static long requestOffset(long first, long step, long bufferSize, long size, long i) {
        long span = size - bufferSize + 1;
        long raw = first + i * step;
        return span <= 0 ? 0 : raw % span;
    }
}
