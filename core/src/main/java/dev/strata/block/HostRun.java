package dev.strata.block;

/**
 * Guest bytes of a node that are stored plainly, one after another, in a host file: the first
 * {@code length} bytes of a range asked of {@link BlockDriver#hostRun} lie at {@code [offset,
 * offset+length)} of {@code file}. Holes, zero clusters, compressed clusters and data read from a
 * backing file are not plainly stored and have no run.
 */
public record HostRun(HostFile file, long offset, long length) {
    public HostRun {
        if (offset < 0 || length <= 0) {
            throw new IllegalArgumentException("bad host run at " + offset + " of " + length + " bytes");
        }
    }
}
