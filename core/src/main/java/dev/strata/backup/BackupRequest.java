package dev.strata.backup;

import dev.strata.block.BlockNode;

/**
 * What a backup job is asked to do, as QAPI's BackupCommon says it, with the nodes already looked
 * up: {@code bitmap} and {@code bitmapMode} may be null (absent); {@code onClean} runs when the job
 * is cleaned up (drive-backup closes the target it opened).
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
        Runnable onClean) {}
