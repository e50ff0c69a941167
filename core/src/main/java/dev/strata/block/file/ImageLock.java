package dev.strata.block.file;

import dev.strata.block.BlockException;
import dev.strata.block.OpenFlags;
import java.util.Collections;
import java.util.EnumSet;
import java.util.Set;

/**
 * The image lock a file node holds, in QEMU's file-posix byte-lock scheme, so that Strata and QEMU
 * processes (and two Strata nodes) refuse to write an image under each other's feet.
 *
 * <h2>Byte layout</h2>
 *
 * Every permission bit {@code i} of {@link Permission} owns two bytes of the image file, each held
 * with a shared OFD lock ({@code fcntl(F_OFD_SETLK, F_RDLCK)}, one byte long):
 *
 * <pre>
 *   byte 100 + i   held by everyone who HAS permission i       (100 consistent read, 101 write,
 *                                                                102 write unchanged, 103 resize)
 *   byte 200 + i   held by everyone who does NOT SHARE i        (200 .. 203, same order)
 * </pre>
 *
 * Libvirt uses byte 0, hence the offsets. The locks are advisory and never exclusive: the
 * conflict is found by asking, with {@code F_OFD_GETLK} and a write-lock probe, whether anyone else
 * holds a byte. An opener that wants permission {@code i} fails if byte {@code 200+i} is held by
 * another description ({@code Failed to get "write" lock}); an opener that refuses to share
 * {@code i} fails if byte {@code 100+i} is held ({@code Failed to get shared "write" lock}). As QEMU
 * does, the opener first takes its own bytes and only then checks, so two racing openers cannot
 * both pass. OFD locks belong to the open file description, so two nodes of one process on one
 * file conflict exactly as two processes do; closing the descriptor drops every byte at once.
 *
 * <h2>What Strata asks for</h2>
 *
 * A file node knows only its {@link OpenFlags}, not which guest device or format sits on it, so it
 * takes what QEMU's qcow2 takes of its file child (the strictest common case):
 *
 * <pre>
 *   open mode             permissions                        unshared (others may not)
 *   read-write            consistent read, write, resize     write, resize
 *   read-only             consistent read                    write, resize
 *   read-only, -U         consistent read                    nothing (force-share)
 *   creating the file     write, resize                      resize
 * </pre>
 *
 * QEMU 7.2 has four permission bits; older releases also locked byte 104/204 for a fifth
 * ("change children") that no longer exists, which Strata neither takes nor checks.
 */
record ImageLock(Set<Permission> permissions, Set<Permission> unshared) {
    static final int PERM_BASE = 100;
    static final int SHARED_BASE = 200;

    /** QEMU's BLK_PERM_* bits in bit order, named as QEMU names them in its error messages. */
    enum Permission {
        CONSISTENT_READ(0, "consistent read"),
        WRITE(1, "write"),
        WRITE_UNCHANGED(2, "write unchanged"),
        RESIZE(3, "resize");

        /** The bit number: BLK_PERM_x == 1 &lt;&lt; bit. */
        private final int bit;

        private final String qemuName;

        Permission(int bit, String qemuName) {
            this.bit = bit;
            this.qemuName = qemuName;
        }

        String qemuName() {
            return qemuName;
        }

        int permByte() {
            return PERM_BASE + bit;
        }

        int sharedByte() {
            return SHARED_BASE + bit;
        }
    }

    ImageLock {
        // EnumSets iterate in bit order, the order QEMU takes and checks bytes in
        permissions = frozen(permissions);
        unshared = frozen(unshared);
    }

    /** The lock a file node opened with {@code flags} holds (the table above). */
    static ImageLock forFlags(OpenFlags flags) {
        Set<Permission> perms = flags.readOnly()
                ? EnumSet.of(Permission.CONSISTENT_READ)
                : EnumSet.of(Permission.CONSISTENT_READ, Permission.WRITE, Permission.RESIZE);
        Set<Permission> unshared =
                flags.forceShare() ? EnumSet.noneOf(Permission.class) : EnumSet.of(Permission.WRITE, Permission.RESIZE);
        return new ImageLock(perms, unshared);
    }

    /**
     * The lock QEMU's file create takes while it empties and sizes a file: write and resize, and
     * everything but resize shared. A creator thus fails against anyone who holds the image
     * without sharing write (every writer, and every reader that is not force-sharing), and two
     * creators of one file fail against each other.
     */
    static ImageLock forCreate() {
        return new ImageLock(EnumSet.of(Permission.WRITE, Permission.RESIZE), EnumSet.of(Permission.RESIZE));
    }

    /**
     * Whether byte locks work on {@code fd}: OFD locks exist since Linux 3.15, and a file system
     * without lock support refuses the probe.
     */
    static boolean supported(int fd) {
        if (!Posix.AVAILABLE) {
            return false;
        }
        try {
            Posix.lockConflicts(fd, Posix.F_WRLCK, 0, 0);
            return true;
        } catch (BlockException e) {
            return false;
        }
    }

    /**
     * Takes this lock's bytes on {@code fd}, then checks that nobody else holds a conflicting byte.
     * Bits are taken and checked lowest first, as QEMU does, so a conflict gets the message QEMU
     * would give. On a failure the caller must close {@code fd}, which drops the bytes taken.
     *
     * @param filename the image's name as the user gave it, for the hint
     */
    void acquire(int fd, String filename) throws BlockException {
        for (Permission p : permissions) {
            lockByte(fd, p.permByte());
        }
        for (Permission p : unshared) {
            lockByte(fd, p.sharedByte());
        }
        for (Permission p : permissions) {
            if (Posix.lockConflicts(fd, Posix.F_WRLCK, p.sharedByte(), 1)) {
                throw conflict("Failed to get \"" + p.qemuName() + "\" lock", filename);
            }
        }
        for (Permission p : unshared) {
            if (Posix.lockConflicts(fd, Posix.F_WRLCK, p.permByte(), 1)) {
                throw conflict("Failed to get shared \"" + p.qemuName() + "\" lock", filename);
            }
        }
    }

    private static void lockByte(int fd, int offset) throws BlockException {
        try {
            Posix.setLock(fd, Posix.F_RDLCK, offset, 1);
        } catch (BlockException e) {
            // EAGAIN/EACCES mean someone holds an exclusive lock there: say so without the errno text
            boolean held = e.errno() == Posix.EAGAIN || e.errno() == Posix.EACCES;
            throw new BlockException(
                    "Failed to lock byte " + offset + (held ? "" : ": " + Posix.strerror(e.errno())), e.errno());
        }
    }

    private static BlockException conflict(String message, String filename) {
        return new BlockException(message + "\nIs another process using the image [" + filename + "]?", Posix.EAGAIN);
    }

    private static Set<Permission> frozen(Set<Permission> set) {
        return Collections.unmodifiableSet(set.isEmpty() ? EnumSet.noneOf(Permission.class) : EnumSet.copyOf(set));
    }
}
