package dev.strata.block;

/**
 * How a node is opened.
 *
 * @param readOnly refuse writes and take only read permissions on the image
 * @param forceShare allow other processes to write the image meanwhile (qemu-img's {@code -U});
 *     only valid with {@code readOnly}
 * @param noFlush make flushes no-ops (QEMU's {@code cache.no-flush}, qemu-img's {@code -t unsafe}):
 *     for scratch output whose durability the caller does not need, as qemu-img convert's default
 * @param noIo the node is opened to describe it, never to read or write guest data (QEMU's
 *     BDRV_O_NO_IO, qemu-img info's open): format checks that only guard guest I/O are skipped
 */
public record OpenFlags(boolean readOnly, boolean forceShare, boolean noFlush, boolean noIo) {
    public static final OpenFlags READ_WRITE = new OpenFlags(false, false);
    public static final OpenFlags READ_ONLY = new OpenFlags(true, false);

    public OpenFlags {
        if (forceShare && !readOnly) {
            throw new IllegalArgumentException("force-share=on can only be used with read-only images");
        }
    }

    public OpenFlags(boolean readOnly, boolean forceShare) {
        this(readOnly, forceShare, false, false);
    }

    public OpenFlags(boolean readOnly, boolean forceShare, boolean noFlush) {
        this(readOnly, forceShare, noFlush, false);
    }

    public OpenFlags asReadOnly() {
        return new OpenFlags(true, forceShare, noFlush, noIo);
    }

    public OpenFlags withNoFlush(boolean on) {
        return new OpenFlags(readOnly, forceShare, on, noIo);
    }

    /** These flags for a node opened only to be described (qemu-img info). */
    public OpenFlags withNoIo() {
        return new OpenFlags(readOnly, forceShare, noFlush, true);
    }
}
