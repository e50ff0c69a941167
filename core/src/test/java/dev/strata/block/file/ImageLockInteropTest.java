package dev.strata.block.file;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.OpenFlags;
import dev.strata.block.drivers.Drivers;
import dev.strata.testing.Interop;
import dev.strata.testing.LockHolder;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Image locking against the real QEMU tools: whatever a QEMU process sees when another QEMU
 * process holds an image, it must see when Strata holds it, and Strata must see the same.
 *
 * <p>The expected outcomes are not written down here: each test first lets QEMU hold the image
 * and records what QEMU's own openers get, then checks Strata as holder and as opener against that.
 * The image is qcow2 because QEMU's raw driver passes its user's permissions through (qemu-io on a
 * raw file shares everything), while qcow2 asks for what Strata's file node asks for.
 */
class ImageLockInteropTest {
    /** The three ways to open an image, as Strata flags and as qemu-io options. */
    enum Mode {
        READ_WRITE,
        READ_ONLY,
        FORCE_SHARE;

        OpenFlags flags() {
            return switch (this) {
                case READ_WRITE -> OpenFlags.READ_WRITE;
                case READ_ONLY -> OpenFlags.READ_ONLY;
                case FORCE_SHARE -> new OpenFlags(true, true);
            };
        }

        List<String> qemuIoOptions() {
            return switch (this) {
                case READ_WRITE -> List.of();
                case READ_ONLY -> List.of("-r");
                case FORCE_SHARE -> List.of("-r", "-U");
            };
        }
    }

    /** How an open went: ok, or the error as QEMU words it (without the tool's own prefix). */
    record Outcome(boolean ok, String error) {
        static final Outcome OK = new Outcome(true, "");
    }

    @TempDir
    Path dir;

    private Path img;

    @BeforeEach
    void createImage() throws Exception {
        img = dir.resolve("disk.qcow2");
        Interop.qemuImg("create", "-q", "-f", "qcow2", img.toString(), "1M").assertOk();
    }

    @ParameterizedTest
    @EnumSource(Mode.class)
    void strataHoldsTheBytesQemuHolds(Mode mode) throws Exception {
        Set<Long> qemuBytes;
        try (LockHolder _ = qemuIoHolding(mode)) {
            qemuBytes = LockHolder.lockedBytes(img);
        }
        assertThat(qemuBytes).isNotEmpty();
        try (FileDriver d = FileDriver.open(img.toString(), mode.flags(), FileDriver.Locking.AUTO)) {
            assertThat(d.locked()).isTrue();
            assertThat(LockHolder.lockedBytes(img)).isEqualTo(qemuBytes);
        }
        assertThat(LockHolder.lockedBytes(img)).isEmpty();
    }

    /**
     * For one holder mode: every qemu-io/qemu-img opener, and a Strata opener in each mode, fares
     * against a Strata holder (another node of this process) exactly as against a qemu-io holder.
     */
    @ParameterizedTest
    @EnumSource(Mode.class)
    void everyOpenerFaresAgainstStrataAsAgainstQemu(Mode holderMode) throws Exception {
        Map<String, Outcome> underQemu;
        try (LockHolder _ = qemuIoHolding(holderMode)) {
            underQemu = openers();
        }
        Map<String, Outcome> underStrata;
        try (FileDriver _ = FileDriver.open(img.toString(), holderMode.flags(), FileDriver.Locking.AUTO)) {
            underStrata = openers();
        }
        // QEMU's own view first: unless it force-shares, a holder refuses a second writer, or the
        // comparison below proves nothing
        if (holderMode == Mode.FORCE_SHARE) {
            assertThat(underQemu.values()).containsOnly(Outcome.OK);
        } else {
            assertThat(underQemu.get("qemu-io rw").error()).startsWith("Failed to get \"write\" lock");
        }
        for (String opener : underQemu.keySet()) {
            if (opener.startsWith("strata")) {
                String tool = opener.replace("strata", "qemu-io");
                assertThat(underQemu.get(opener))
                        .as(opener + " vs qemu-io holder")
                        .isEqualTo(underQemu.get(tool));
            }
        }
        assertThat(underStrata).isEqualTo(underQemu);
    }

    /** Opens the image every way once, qemu-io and qemu-img first, then Strata in each mode. */
    private Map<String, Outcome> openers() throws Exception {
        Map<String, Outcome> out = new LinkedHashMap<>();
        String image = img.toString();
        out.put("qemu-io rw", qemuIo("-c", "read 0 512", image));
        out.put("qemu-io ro", qemuIo("-r", "-c", "read 0 512", image));
        out.put("qemu-io ro-share", qemuIo("-r", "-U", "-c", "read 0 512", image));
        out.put("qemu-io raw rw", qemuIo("-f", "raw", "-c", "read 0 512", image));
        out.put("qemu-img info", qemuImg("info", image));
        out.put("qemu-img info -U", qemuImg("info", "-U", image));
        out.put("qemu-img check", qemuImg("check", image));
        out.put("qemu-img map", qemuImg("map", image));
        out.put("strata rw", strataOpen(Mode.READ_WRITE));
        out.put("strata ro", strataOpen(Mode.READ_ONLY));
        out.put("strata ro-share", strataOpen(Mode.FORCE_SHARE));
        return out;
    }

    private Outcome qemuIo(String... args) throws Exception {
        return outcome(Interop.qemuIo(args), "qemu-io: can't open device " + img + ": ");
    }

    private Outcome qemuImg(String... args) throws Exception {
        return outcome(Interop.qemuImg(args), "qemu-img: Could not open '" + img + "': ");
    }

    private static Outcome outcome(Interop.Result r, String prefix) {
        if (r.exitCode() == 0) {
            return Outcome.OK;
        }
        String err = r.stderr().strip();
        return new Outcome(false, err.startsWith(prefix) ? err.substring(prefix.length()) : err);
    }

    private Outcome strataOpen(Mode mode) throws IOException {
        try (FileDriver _ = FileDriver.open(img.toString(), mode.flags(), FileDriver.Locking.AUTO)) {
            return Outcome.OK;
        } catch (BlockException e) {
            return new Outcome(false, e.getMessage());
        }
    }

    @Test
    void qemuWritersAndStrictReadersRefuseAnImageStrataWrites() throws Exception {
        String image = img.toString();
        try (FileDriver _ = FileDriver.open(image, false)) {
            Interop.Result write = Interop.qemuIo("-c", "write 0 512", image);
            assertThat(write.exitCode()).isNotZero();
            assertThat(write.stderr())
                    .contains("Failed to get \"write\" lock")
                    .contains("Is another process using the image [" + image + "]?");
            Interop.Result resize = Interop.qemuImg("resize", image, "2M");
            assertThat(resize.exitCode()).isNotZero();
            assertThat(resize.stderr()).contains("Failed to get \"write\" lock");
            Interop.Result info = Interop.qemuImg("info", image);
            assertThat(info.exitCode()).isNotZero();
            assertThat(info.stderr()).contains("Failed to get shared \"write\" lock");
            assertThat(Interop.qemuImg("info", "-U", image).assertOk().stdout()).contains("file format: qcow2");
        }
        // and once Strata lets go, the same writer gets in
        Interop.qemuIo("-c", "write 0 512", image).assertOk();
    }

    @Test
    void whileStrataReadsOtherReadersWorkAndWritersAreRefused() throws Exception {
        String image = img.toString();
        try (FileDriver _ = FileDriver.open(image, true)) {
            Interop.qemuIo("-r", "-c", "read 0 512", image).assertOk();
            Interop.qemuImg("info", image).assertOk();
            Interop.qemuImg("check", image).assertOk();
            Interop.Result write = Interop.qemuIo("-c", "write 0 512", image);
            assertThat(write.exitCode()).isNotZero();
            assertThat(write.stderr()).contains("Failed to get \"write\" lock");
            try (FileDriver second = FileDriver.open(image, true)) {
                assertThat(second.locked()).isTrue();
            }
        }
    }

    /** An interactive qemu-io with the image open in {@code mode}. */
    private LockHolder qemuIoHolding(Mode mode) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("qemu-io"));
        cmd.addAll(mode.qemuIoOptions());
        cmd.add(img.toString());
        return LockHolder.start(img, cmd.toArray(String[]::new));
    }

    /** qemu-storage-daemon with the image open read-write as a qcow2 node, as a QEMU writer holds it. */
    private LockHolder storageDaemonWriting() throws Exception {
        return LockHolder.start(
                img,
                "qemu-storage-daemon",
                "--blockdev",
                "driver=file,node-name=f,filename=" + img,
                "--blockdev",
                "driver=qcow2,node-name=q,file=f");
    }

    @Test
    void strataRefusesAnImageQemuStorageDaemonWrites() throws Exception {
        String image = img.toString();
        try (LockHolder _ = storageDaemonWriting()) {
            assertThatThrownBy(() -> FileDriver.open(image, false))
                    .isInstanceOf(BlockException.class)
                    .hasMessage("Failed to get \"write\" lock\nIs another process using the image [" + image + "]?");
            assertThatThrownBy(() -> FileDriver.open(image, true))
                    .isInstanceOf(BlockException.class)
                    .hasMessage(
                            "Failed to get shared \"write\" lock\nIs another process using the image [" + image + "]?");
            // force-share reads while QEMU writes, through the graph as qemu-img -U would
            try (BlockGraph graph = Drivers.newGraph()) {
                BlockNode node = graph.openImage(image, "raw", new OpenFlags(true, true));
                byte[] magic = new byte[4];
                node.read(0, magic, 0, 4);
                assertThat(magic).isEqualTo(new byte[] {'Q', 'F', 'I', (byte) 0xfb});
                node.close();
                assertThatThrownBy(() -> graph.openImage(image, "raw", OpenFlags.READ_ONLY))
                        .hasMessageStartingWith("Failed to get shared \"write\" lock");
            }
        }
    }

    @Test
    void blockdevOptionsForceShareAndLocking() throws Exception {
        String image = img.toString();
        try (LockHolder _ = storageDaemonWriting();
                BlockGraph graph = Drivers.newGraph()) {
            var held = LockHolder.lockedBytes(img);
            BlockNode shared = graph.add(BlockOptions.parseKeyValue(
                    "driver=file,node-name=s,read-only=on,force-share=on,filename=" + image, null));
            assertThat(((FileDriver) shared.driver()).locked()).isTrue();
            BlockNode unlocked = graph.add(
                    BlockOptions.parseKeyValue("driver=file,node-name=u,locking=off,filename=" + image, null));
            assertThat(((FileDriver) unlocked.driver()).locked()).isFalse();
            assertThat(unlocked.readOnly()).isFalse();
            // neither node added a byte that a writer would trip on
            assertThat(LockHolder.lockedBytes(img)).isEqualTo(held);
            assertThatThrownBy(() -> graph.add(
                            BlockOptions.parseKeyValue("driver=file,node-name=l,locking=on,filename=" + image, null)))
                    .hasMessageStartingWith("Failed to get \"write\" lock");
        }
    }

    @Test
    void lockingOffLetsQemuWriteAndBadValuesAreRefusedAsQemuDoes() throws Exception {
        String image = img.toString();
        try (BlockGraph graph = Drivers.newGraph()) {
            graph.add(BlockOptions.parseKeyValue("driver=file,node-name=u,locking=off,filename=" + image, null));
            assertThat(LockHolder.lockedBytes(img)).isEmpty();
            Interop.qemuIo("-c", "write 0 512", image).assertOk();
            BlockNode on =
                    graph.add(BlockOptions.parseKeyValue("driver=file,node-name=o,locking=on,filename=" + image, null));
            assertThat(((FileDriver) on.driver()).locked()).isTrue();
            assertThat(LockHolder.lockedBytes(img)).isNotEmpty();
        }
        assertThat(LockHolder.lockedBytes(img)).isEmpty();
        Interop.Result qemu =
                Interop.qemuIo("--image-opts", "-c", "read 0 1", "driver=file,locking=bogus,filename=" + image);
        assertThat(qemu.exitCode()).isNotZero();
        try (BlockGraph graph = Drivers.newGraph()) {
            assertThatThrownBy(() ->
                            graph.add(BlockOptions.parseKeyValue("driver=file,locking=bogus,filename=" + image, null)))
                    .isInstanceOf(BlockException.class)
                    .satisfies(e -> assertThat(qemu.stderr()).contains(e.getMessage()));
        }
    }
}
