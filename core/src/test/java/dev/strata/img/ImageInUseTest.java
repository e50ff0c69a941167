package dev.strata.img;

import static org.assertj.core.api.Assertions.assertThat;

import dev.strata.testing.Interop;
import dev.strata.testing.LockHolder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Every {@code strata img} subcommand against an image another process holds: a Strata daemon
 * serving it, or QEMU's qemu-io with it open read-write. Whatever qemu-img does on the same image
 * under the same holder, strata img must do: the same exit code and the same error text (after the
 * tool's own prefix), and an image it refuses stays the same byte for byte.
 *
 * <p>The expected outcomes are not written down: qemu-img is run first on the held image, and the
 * test also checks that qemu-img refused, so a holder that took no lock cannot make it pass.
 */
class ImageInUseTest {
    /** Who holds the image while the commands run. */
    enum Holder {
        STRATA_DAEMON(LockHolder::strataDaemon),
        QEMU_IO(image -> LockHolder.start(image, "qemu-io", "-f", "qcow2", image.toString()));

        final Starter starter;

        Holder(Starter starter) {
            this.starter = starter;
        }
    }

    @FunctionalInterface
    interface Starter {
        LockHolder start(Path image) throws Exception;
    }

    /**
     * The commands, with {@code D} for the held image and {@code B} for a free one: every
     * subcommand at least once, each way it opens the held image (read, write, create, -U).
     */
    private static final List<String> COMMANDS = List.of(
            "info D",
            "info -U D",
            "map D",
            "map -U D",
            "check D",
            "check -U D",
            "check -r leaks D",
            "check -r all D",
            "compare D B",
            "compare B D",
            "compare -U D B",
            "convert -O qcow2 D O",
            "convert -U -O qcow2 D O",
            "convert -O qcow2 B D",
            "convert -n -O qcow2 B D",
            "create -f qcow2 D 1M",
            "create -f raw D 1M",
            "rebase -u -b B -F qcow2 D",
            "rebase -b B -F qcow2 D",
            "commit D",
            "resize D 128M",
            "resize -f qcow2 D +1M",
            "bitmap --add D b0",
            "bitmap --remove D b0",
            "bench -c 1 D",
            "bench -c 1 -U D",
            "bench -c 1 -w D");

    /** Commands that only read with force-share: allowed under any holder, by QEMU too. */
    private static final List<String> SHARED_READS = List.of(
            "info -U D", "map -U D", "check -U D", "compare -U D B", "convert -U -O qcow2 D O", "bench -c 1 -U D");

    @TempDir
    Path dir;

    private Path held;
    private Path free;

    @BeforeEach
    void images() throws Exception {
        Interop.require("qemu-img", "qemu-io");
        held = dir.resolve("held.qcow2");
        free = dir.resolve("free.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", held.toString(), "64M").assertOk();
        Interop.qemuIo("-c", "write -P 0x5a 0 1M", held.toString()).assertOk();
        Interop.qemuImg("create", "-q", "-f", "qcow2", free.toString(), "64M").assertOk();
    }

    @ParameterizedTest
    @EnumSource(Holder.class)
    void everySubcommandFaresAsQemuImgAndLeavesARefusedImageUntouched(Holder holder) throws Exception {
        try (LockHolder h = holder.starter.start(held)) {
            String before = sha256(held);
            for (String command : COMMANDS) {
                String[] qemuArgs = args(command);
                ImgTool.Run qemu = ImgTool.qemu(qemuArgs);
                assertThat(sha256(held))
                        .as("qemu-img %s changed the held image", command)
                        .isEqualTo(before);
                ImgTool.Run strata = ImgTool.strata(args(command));
                String what = "strata img " + command + " under " + holder;
                if (SHARED_READS.contains(command)) {
                    // compare exits 1 for images that differ: what matters is that nobody refuses
                    assertThat(qemu.exit())
                            .as("qemu-img %s under %s: %s", command, holder, qemu.err())
                            .isIn(0, 1);
                    assertThat(qemu.err()).doesNotContain("lock");
                    assertThat(strata.exit()).as("%s: %s", what, strata.err()).isEqualTo(qemu.exit());
                    assertThat(strata.err()).as(what).doesNotContain("lock");
                } else {
                    assertThat(qemu.errNormalized())
                            .as("qemu-img %s refuses under %s", command, holder)
                            .contains("Is another process using the image");
                    assertThat(strata.exit()).as(what).isEqualTo(qemu.exit());
                    assertThat(strata.errNormalized()).as(what).isEqualTo(qemu.errNormalized());
                }
                assertThat(sha256(held)).as("%s changed the held image", what).isEqualTo(before);
                Files.deleteIfExists(dir.resolve("out.qcow2"));
            }
            assertThat(h.alive()).as("the holder survived every command").isTrue();
        }
        Interop.qemuImg("check", held.toString()).assertOk();
    }

    private String[] args(String command) {
        return List.of(command.split(" ")).stream()
                .map(a -> switch (a) {
                    case "D" -> held.toString();
                    case "B" -> free.toString();
                    case "O" -> dir.resolve("out.qcow2").toString();
                    default -> a;
                })
                .toArray(String[]::new);
    }

    static String sha256(Path file) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(file)));
    }
}
