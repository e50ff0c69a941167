package dev.strata.daemon;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.BitSet;
import java.util.HexFormat;

/**
 * What a dirty bitmap should hold after a sequence of guest writes: one bit per granule, set for
 * every granule a write touched; its count in bytes and its SHA-256 computed the way QEMU's
 * x-debug-block-dirty-bitmap-sha256 defines it (little-endian 64-bit words of the bit array).
 */
final class BitmapModel {
    final long length;
    final long granularity;
    final BitSet bits = new BitSet();

    BitmapModel(long length, long granularity) {
        this.length = length;
        this.granularity = granularity;
    }

    void write(long offset, long len) {
        if (len > 0) {
            bits.set((int) (offset / granularity), (int) ((offset + len + granularity - 1) / granularity));
        }
    }

    void clear() {
        bits.clear();
    }

    long count() {
        return bits.cardinality() * granularity;
    }

    String sha256() {
        long chunks = (length + granularity - 1) / granularity;
        int words = (int) ((chunks + 63) / 64);
        ByteBuffer buf = ByteBuffer.allocate(words * 8).order(ByteOrder.LITTLE_ENDIAN);
        long[] w = bits.toLongArray();
        for (int i = 0; i < words; i++) {
            buf.putLong(i < w.length ? w[i] : 0);
        }
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(buf.array()));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
