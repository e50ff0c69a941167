package dev.strata.block.qcow2;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdException;
import dev.strata.block.BlockException;
import java.util.zip.DataFormatException;
import java.util.zip.Deflater;
import java.util.zip.Inflater;

/**
 * Compression and decompression of compressed clusters: raw deflate (no zlib header, QEMU's
 * "zlib") or one zstd frame, each holding exactly one cluster.
 *
 * <p>QEMU inflates with a 4 KiB window (windowBits -12), and java.util.zip cannot choose the
 * window size, so the deflater is flushed fully every 4 KiB of input: no back-reference then
 * reaches further than 4 KiB, and the stream inflates with QEMU's window.
 *
 * <p>The stored range runs to the end of the last 512-byte sector and may hold the start of the
 * next compressed cluster, so decompression stops at one cluster of output (deflate) or at the end
 * of the first frame (zstd) and ignores what follows.
 */
final class Compression {
    private Compression() {}

    /**
     * Decompresses {@code src[0, srcLen)} into {@code dst[0, clusterSize)}; fails unless exactly
     * one cluster comes out.
     */
    static void decompress(int type, byte[] src, int srcLen, byte[] dst, int clusterSize, Inflater inflater)
            throws BlockException {
        if (type == Qcow2Header.COMPRESSION_ZSTD) {
            long frame = Zstd.findFrameCompressedSize(src, 0, srcLen);
            if (Zstd.isError(frame)) {
                throw corrupt("zstd: " + Zstd.getErrorName(frame));
            }
            long n = Zstd.decompressByteArray(dst, 0, clusterSize, src, 0, (int) frame);
            if (Zstd.isError(n)) {
                throw corrupt("zstd: " + Zstd.getErrorName(n));
            }
            if (n != clusterSize) {
                throw corrupt("zstd frame holds " + n + " bytes instead of " + clusterSize);
            }
            return;
        }
        inflater.reset();
        inflater.setInput(src, 0, srcLen);
        int produced = 0;
        try {
            while (produced < clusterSize) {
                int n = inflater.inflate(dst, produced, clusterSize - produced);
                produced += n;
                if (n == 0 && (inflater.finished() || inflater.needsInput() || inflater.needsDictionary())) {
                    break;
                }
            }
        } catch (DataFormatException e) {
            throw corrupt("deflate: " + e.getMessage());
        }
        if (produced != clusterSize) {
            throw corrupt("deflate data holds " + produced + " bytes instead of " + clusterSize);
        }
    }

    /** Input bytes between full flushes, so that back-references fit QEMU's 4 KiB window. */
    private static final int DEFLATE_WINDOW = 4096;

    /** zstd's default level, which QEMU uses too. */
    private static final int ZSTD_LEVEL = 3;

    /**
     * Compresses {@code src[0, len)} into {@code dst}; returns the compressed length, or -1 when it
     * would not fit in {@code maxLen} bytes (the caller then stores the cluster uncompressed).
     */
    static int compress(int type, byte[] src, int len, byte[] dst, int maxLen, Deflater deflater) {
        if (type == Qcow2Header.COMPRESSION_ZSTD) {
            try {
                long n = Zstd.compressByteArray(dst, 0, maxLen, src, 0, len, ZSTD_LEVEL);
                return Zstd.isError(n) ? -1 : (int) n;
            } catch (ZstdException e) {
                // zstd-jni reports a destination too small (incompressible data) by throwing
                return -1;
            }
        }
        deflater.reset();
        int out = 0;
        for (int in = 0; in < len; in += DEFLATE_WINDOW) {
            int chunk = Math.min(DEFLATE_WINDOW, len - in);
            deflater.setInput(src, in, chunk);
            boolean last = in + chunk == len;
            if (last) {
                deflater.finish();
            }
            int flush = last ? Deflater.NO_FLUSH : Deflater.FULL_FLUSH;
            while (true) {
                int room = maxLen - out;
                if (room == 0) {
                    return -1;
                }
                int n = deflater.deflate(dst, out, room, flush);
                out += n;
                // a flush is complete once output stops filling all the room given
                if (last ? deflater.finished() : n < room) {
                    break;
                }
            }
        }
        return out;
    }

    private static BlockException corrupt(String why) {
        return new BlockException("Compressed cluster is corrupt (" + why + ")");
    }
}
