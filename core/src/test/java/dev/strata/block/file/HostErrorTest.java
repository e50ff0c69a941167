package dev.strata.block.file;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.block.BlockException;
import java.io.IOException;
import org.junit.jupiter.api.Test;

/** Host I/O errors (the JDK's strerror texts) get their errno where they enter the block layer. */
class HostErrorTest {
    @Test
    void jdkTextsMapBackToTheirErrno() {
        BlockException full = FileDriver.hostError(new IOException("No space left on device"));
        assertThat(full.errno()).isEqualTo(BlockException.ENOSPC);
        assertThat(full).hasMessage("No space left on device");
        assertThat(FileDriver.hostError(new IOException("Disk quota exceeded")).errno())
                .isEqualTo(122);
        assertThat(FileDriver.hostError(new IOException("Input/output error")).errno())
                .isEqualTo(BlockException.EIO);
        BlockException other = FileDriver.hostError(new IOException("something else"));
        assertThat(other.errno()).isEqualTo(BlockException.EIO);
        assertThat(other).hasMessage("something else");
        BlockException already = new BlockException("x", BlockException.EPERM);
        assertThat(FileDriver.hostError(already)).isSameAs(already);
    }
}
