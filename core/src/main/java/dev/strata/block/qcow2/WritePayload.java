package dev.strata.block.qcow2;

import dev.strata.block.HostRun;
import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The bytes a {@link Qcow2Writer} stores: a caller's buffer, or a run of a host file that the file
 * child copies inside the kernel (copy offload). Offsets passed in count from the payload's
 * current start, which {@link #advance} moves; nothing else changes it.
 */
sealed interface WritePayload {
    /** Bytes not yet written, capped so that one piece's arithmetic stays inside an int. */
    int remaining();

    /** Copies bytes {@code [from, from+n)} into {@code dst} at {@code at} (the merge of a copy-on-write). */
    void copy(int from, byte[] dst, int at, int n) throws IOException;

    /** Writes bytes {@code [from, from+n)} to the image file at {@code host}. */
    void write(ImageFile file, long host, int from, int n) throws IOException;

    void advance(int n);

    static WritePayload of(ByteBuffer src) {
        return new Buffer(src);
    }

    static WritePayload of(HostRun run) {
        return new Run(run);
    }

    /** A caller's buffer; its position follows {@link #advance}, as {@code write} promises. */
    record Buffer(ByteBuffer src) implements WritePayload {
        @Override
        public int remaining() {
            return src.remaining();
        }

        @Override
        public void copy(int from, byte[] dst, int at, int n) {
            src.get(src.position() + from, dst, at, n);
        }

        @Override
        public void write(ImageFile file, long host, int from, int n) throws IOException {
            file.write(host, src.slice(src.position() + from, n));
        }

        @Override
        public void advance(int n) {
            src.position(src.position() + n);
        }
    }

    /** A host run, read in the kernel (copied to the file) or, for merges, into memory. */
    final class Run implements WritePayload {
        private static final int MAX_PIECE = 1 << 30;

        private final HostRun run;
        private long done;

        Run(HostRun run) {
            this.run = run;
        }

        @Override
        public int remaining() {
            return (int) Math.min(MAX_PIECE, run.length() - done);
        }

        @Override
        public void copy(int from, byte[] dst, int at, int n) throws IOException {
            run.file().read(run.offset() + done + from, ByteBuffer.wrap(dst, at, n));
        }

        @Override
        public void write(ImageFile file, long host, int from, int n) throws IOException {
            file.writeHost(host, new HostRun(run.file(), run.offset() + done + from, n));
        }

        @Override
        public void advance(int n) {
            done += n;
        }
    }
}
