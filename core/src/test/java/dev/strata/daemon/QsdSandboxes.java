package dev.strata.daemon;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.io.TempDir;

/**
 * What a differential test against qemu-storage-daemon holds: a sandbox for each side, the qsd
 * process and the Strata daemon, both stopped after each test whatever happened.
 */
abstract class QsdSandboxes {
    @TempDir
    Path qemuDir;

    @TempDir
    Path strataDir;

    Process qsd;
    Daemon strata;

    @AfterEach
    void stop() throws InterruptedException {
        if (qsd != null && qsd.isAlive()) {
            qsd.destroy();
            if (!qsd.waitFor(10, TimeUnit.SECONDS)) {
                qsd.destroyForcibly();
            }
        }
        if (strata != null) {
            strata.shutdown();
        }
    }
}
