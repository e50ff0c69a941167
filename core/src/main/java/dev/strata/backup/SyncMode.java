package dev.strata.backup;

/** QAPI MirrorSyncMode: what a backup copies. */
public enum SyncMode {
    /** Only what the top layer of the source holds; the target's backing supplies the rest. */
    TOP,
    /** Everything. */
    FULL,
    /** Nothing in the background: only what the guest overwrites (copy-before-write). */
    NONE,
    /** The clusters dirty in a bitmap; the same as {@link #BITMAP} with bitmap-mode on-success. */
    INCREMENTAL,
    /** The clusters dirty in a bitmap, which is then handled per {@link BitmapMode}. */
    BITMAP
}
