package dev.strata.backup;

/** QAPI BitmapSyncMode: what becomes of a backup's bitmap when the job ends. */
public enum BitmapMode {
    /** Success: the bitmap holds only writes made since the job began; failure: as before plus those. */
    ON_SUCCESS,
    /** The bitmap is only read: as before the job plus every write since, whatever the outcome. */
    NEVER,
    /** As on-success even on failure, with the clusters the job did not copy marked again. */
    ALWAYS
}
