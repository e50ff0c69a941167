package dev.strata.nbd;

import java.nio.ByteBuffer;

/**
 * The runs of one BLOCK_STATUS chunk: adjacent runs with equal flags are merged, and the list
 * stops taking runs when it holds {@code max} (1 for NBD_CMD_FLAG_REQ_ONE), so a reply over a huge
 * fragmented range stays bounded; the client asks again from where the reply ended.
 */
final class ExtentList {
    private final int max;
    private long[] lengths = new long[16];
    private int[] flags = new int[16];
    private int count;

    ExtentList(int max) {
        this.max = max;
    }

    /** Adds a run; false when the list is full and the caller should stop. */
    boolean add(long length, int runFlags) {
        if (count > 0 && flags[count - 1] == runFlags) {
            lengths[count - 1] += length;
            return true;
        }
        if (count == max) {
            return false;
        }
        if (count == lengths.length) {
            lengths = java.util.Arrays.copyOf(lengths, count * 2);
            flags = java.util.Arrays.copyOf(flags, count * 2);
        }
        lengths[count] = length;
        flags[count] = runFlags;
        count++;
        return true;
    }

    int size() {
        return count;
    }

    long length(int i) {
        return lengths[i];
    }

    int flags(int i) {
        return flags[i];
    }

    /** Writes the runs as NBD extent descriptors (32-bit length, 32-bit flags). */
    void writeTo(ByteBuffer out) {
        for (int i = 0; i < count; i++) {
            out.putInt((int) lengths[i]);
            out.putInt(flags[i]);
        }
    }
}
