package dev.strata.bitmap;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A plain model of a huge bitmap: the set bits as disjoint, non-adjacent runs {@code [start, end)}
 * in a sorted map, so that 2^40-bit bitmaps with sparse contents fit in a test (a BitSet cannot).
 */
final class SparseBits {
    final long size;
    private final TreeMap<Long, Long> runs = new TreeMap<>();

    SparseBits(long size) {
        this.size = size;
    }

    void set(long start, long n) {
        if (n == 0) {
            return;
        }
        long s = start;
        long e = start + n;
        Map.Entry<Long, Long> before = runs.floorEntry(s);
        if (before != null && before.getValue() >= s) {
            s = before.getKey();
            e = Math.max(e, before.getValue());
        }
        while (true) {
            Map.Entry<Long, Long> next = runs.ceilingEntry(s);
            if (next == null || next.getKey() > e) {
                break;
            }
            e = Math.max(e, next.getValue());
            runs.remove(next.getKey());
        }
        runs.put(s, e);
    }

    void reset(long start, long n) {
        if (n == 0) {
            return;
        }
        long end = start + n;
        Map.Entry<Long, Long> before = runs.lowerEntry(start);
        if (before != null && before.getValue() > start) {
            runs.put(before.getKey(), start);
            if (before.getValue() > end) {
                runs.put(end, before.getValue());
                return;
            }
        }
        while (true) {
            Map.Entry<Long, Long> next = runs.ceilingEntry(start);
            if (next == null || next.getKey() >= end) {
                return;
            }
            runs.remove(next.getKey());
            if (next.getValue() > end) {
                runs.put(end, next.getValue());
                return;
            }
        }
    }

    boolean get(long bit) {
        Map.Entry<Long, Long> e = runs.floorEntry(bit);
        return e != null && e.getValue() > bit;
    }

    long count() {
        long total = 0;
        for (var e : runs.entrySet()) {
            total += e.getValue() - e.getKey();
        }
        return total;
    }

    long count(long start, long n) {
        long end = start + n;
        long total = 0;
        Map.Entry<Long, Long> first = runs.floorEntry(start);
        Long from = first != null ? first.getKey() : start;
        for (var e : runs.tailMap(from, true).entrySet()) {
            if (e.getKey() >= end) {
                break;
            }
            total += Math.max(0, Math.min(end, e.getValue()) - Math.max(start, e.getKey()));
        }
        return total;
    }

    long nextSet(long from) {
        if (from >= size) {
            return -1;
        }
        Map.Entry<Long, Long> e = runs.floorEntry(from);
        if (e != null && e.getValue() > from) {
            return from;
        }
        Map.Entry<Long, Long> next = runs.higherEntry(from);
        return next == null ? -1 : next.getKey();
    }

    long nextClear(long from) {
        if (from >= size) {
            return -1;
        }
        Map.Entry<Long, Long> e = runs.floorEntry(from);
        if (e != null && e.getValue() > from) {
            return e.getValue() < size ? e.getValue() : -1;
        }
        return from;
    }

    List<long[]> runs() {
        List<long[]> out = new ArrayList<>();
        for (var e : runs.entrySet()) {
            out.add(new long[] {e.getKey(), e.getValue()});
        }
        return out;
    }

    /** The runs the bitmap reports through nextSet/nextClear, as a reader walking it sees them. */
    static List<long[]> walk(HBitmap b) {
        List<long[]> out = new ArrayList<>();
        for (long bit = b.nextSet(0); bit >= 0; ) {
            long clear = b.nextClear(bit);
            long end = clear < 0 ? b.size() : clear;
            out.add(new long[] {bit, end});
            bit = end >= b.size() ? -1 : b.nextSet(end);
        }
        return out;
    }
}
