package dev.strata.backup;

import dev.strata.block.BlockNode;

/**
 * What a backup job is asked to do, as QAPI's BackupCommon says it, with the nodes already looked
 * up: {@code bitmap} and {@code bitmapMode} may be null (absent); {@code onClean} runs when the job
 * is cleaned up (drive-backup closes the target it opened); {@code discardSource} (QEMU 9.1's
 * discard-source) discards each run of the source once it is copied, which releases a fleecing
 * snapshot's saved clusters as the backup goes.
 */
public record BackupRequest(
        String jobId,
        BlockNode source,
        BlockNode target,
        SyncMode sync,
        String bitmap,
        BitmapMode bitmapMode,
        long speed,
        boolean compress,
        OnError onSourceError,
        OnError onTargetError,
        boolean autoFinalize,
        boolean autoDismiss,
        boolean discardSource,
        Runnable onClean) {}
