package dev.strata.block.qcow2;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import java.io.IOException;
import java.util.List;

/**
 * Checks, and on request repairs, the consistency of a qcow2 image: Strata's {@code qemu-img
 * check}. It reads the image through its own bounded reader without trusting any table, counts
 * every reference to every host cluster and compares the counts with the stored refcounts.
 *
 * <p>The reported numbers, messages and exit codes are qemu-img's (QEMU 7.2): the differential
 * tests run both tools on the same damaged images. Where QEMU gives up but a safe repair exists
 * (a refcount block at an unaligned offset, a rebuild that would land on an old refcount block),
 * Strata repairs; each such difference is named where it is made.
 *
 * <p>Like qemu-img, a repair that fixed anything is followed by a second, read-only check, whose
 * counts are the ones reported together with the numbers of fixed problems.
 */
public final class Qcow2Check {
    static final int ENOMEM = 12;

    private Qcow2Check() {}

    /** What a check may repair: nothing, leaked clusters ({@code -r leaks}), or everything ({@code -r all}). */
    public enum RepairMode {
        NONE,
        LEAKS,
        ALL;

        /** Parses qemu-img's {@code -r} argument ("leaks" or "all"). */
        public static RepairMode parse(String arg) {
            return switch (arg) {
                case "leaks" -> LEAKS;
                case "all" -> ALL;
                default ->
                    throw new IllegalArgumentException(
                            "Unknown option value for -r (expecting 'leaks' or 'all'): " + arg);
            };
        }
    }

    /** Memory the computed refcount table may use by default: half the heap, at most 4 GiB. */
    public static long defaultMemoryBudget() {
        return Math.min(Runtime.getRuntime().maxMemory() / 2, 4L << 30);
    }

    /**
     * Checks the image in {@code file}, reporting it as {@code filename} (the name the user typed),
     * with at most {@code memoryBudget} bytes for the computed refcounts. {@code file} is the image's
     * file node's driver, opened by the caller through the block layer (and so holding the image
     * lock that the mode needs: read-only to check, read-write to repair); the check never opens
     * the file itself and leaves {@code file} open.
     */
    public static Qcow2CheckResult run(BlockDriver file, String filename, RepairMode mode, long memoryBudget) {
        return run(file, filename, mode, memoryBudget, Qcow2CheckImage.Writes.UNLIMITED);
    }

    /** {@link #run(BlockDriver, String, RepairMode, long)} with the repair's writes counted (and limited, in tests). */
    static Qcow2CheckResult run(
            BlockDriver file, String filename, RepairMode mode, long memoryBudget, Qcow2CheckImage.Writes writes) {
        if (mode != RepairMode.NONE && file.readOnly()) {
            return Qcow2CheckResult.failed(
                    filename,
                    "Could not open '" + filename + "': the image is open read-only",
                    0,
                    0,
                    false,
                    new Qcow2CheckLog());
        }
        Qcow2CheckLog log = new Qcow2CheckLog();
        Qcow2CheckTally first;
        try {
            first = pass(file, filename, mode, memoryBudget, log, writes);
        } catch (OpenFailure e) {
            return Qcow2CheckResult.failed(filename, e.getMessage(), 0, 0, false, log);
        } catch (IOException e) {
            return Qcow2CheckResult.failed(filename, checkFailed(e), 0, 0, false, log);
        }
        if (first.corruptionsFixed == 0 && first.leaksFixed == 0) {
            return finish(filename, first, false, log);
        }
        Qcow2CheckTally second;
        try {
            second = pass(file, filename, RepairMode.NONE, memoryBudget, log, writes);
        } catch (IOException e) {
            String why = e instanceof OpenFailure ? e.getMessage() : checkFailed(e);
            return Qcow2CheckResult.failed(filename, why, first.corruptionsFixed, first.leaksFixed, true, log);
        }
        second.corruptionsFixed = first.corruptionsFixed;
        second.leaksFixed = first.leaksFixed;
        return finish(filename, second, true, log);
    }

    private static Qcow2CheckResult finish(String filename, Qcow2CheckTally t, boolean repaired, Qcow2CheckLog log) {
        // qemu-img prints the report, then fails the command if the check itself had errors
        return Qcow2CheckResult.completed(filename, t, repaired, t.checkErrors > 0 ? "Check failed" : null, log);
    }

    private static String checkFailed(IOException e) {
        if (e instanceof CheckBug bug) {
            return "Check failed: internal error: " + bug.getCause();
        }
        return "Check failed: " + Qcow2CheckResult.strerror(errno(e));
    }

    /**
     * A bug in the check itself (an unexpected runtime exception): reported as a failed check,
     * exit code 1, with the exception named, rather than escaping to the caller.
     */
    private static final class CheckBug extends IOException {
        private static final long serialVersionUID = 1L;

        CheckBug(RuntimeException cause) {
            super(cause);
        }
    }

    /** An image that cannot be opened: qemu-img reports the reason instead of a check failure. */
    private static final class OpenFailure extends IOException {
        private static final long serialVersionUID = 1L;

        OpenFailure(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private static Qcow2CheckTally pass(
            BlockDriver file,
            String filename,
            RepairMode mode,
            long memoryBudget,
            Qcow2CheckLog log,
            Qcow2CheckImage.Writes writes)
            throws IOException {
        Qcow2CheckImage img;
        try {
            img = Qcow2CheckOpen.open(file, filename, mode != RepairMode.NONE, log, writes);
        } catch (IOException e) {
            throw new OpenFailure(e.getMessage(), e);
        }
        try (img) {
            List<Qcow2CheckBitmaps.Bitmap> bitmaps;
            try {
                bitmaps = Qcow2CheckBitmaps.loadDirectory(img);
            } catch (IOException e) {
                throw new OpenFailure(e.getMessage(), e);
            }
            return Qcow2CheckPass.run(img, mode, memoryBudget, bitmaps);
        } catch (RuntimeException e) {
            throw new CheckBug(e);
        }
    }

    /** The errno an I/O failure maps to (EIO unless it says otherwise). */
    static int errno(IOException e) {
        if (e instanceof BlockException b) {
            return b.errno();
        }
        if (e instanceof java.nio.file.FileSystemException f && f.getReason() != null) {
            String r = f.getReason();
            if (r.contains("No space")) {
                return BlockException.ENOSPC;
            }
            if (r.contains("too large")) {
                return BlockException.EFBIG;
            }
        }
        return BlockException.EIO;
    }
}
