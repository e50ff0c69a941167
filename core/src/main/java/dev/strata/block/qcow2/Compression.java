package dev.strata.block.qcow2;

import com.github.luben.zstd.Zstd;
import dev.strata.block.BlockException;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Decompression of compressed clusters: raw deflate (no zlib header, QEMU's "zlib") or one zstd
 * frame, each producing exactly one cluster.
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

    private static BlockException corrupt(String why) {
        return new BlockException("Compressed cluster is corrupt (" + why + ")");
    }
}
