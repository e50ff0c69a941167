package dev.strata.block.file;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import dev.strata.block.Extent;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * What Java's file API does not tell about a host file, asked of the C library: which ranges are
 * holes ({@code lseek} with SEEK_DATA / SEEK_HOLE) and how many bytes the file occupies on disk
 * ({@code st_blocks}). QEMU's file-posix reports both; without them a sparse raw image would look
 * fully allocated to {@code map}, {@code convert} and {@code info}.
 *
 * <p>Only on Linux x86_64 and aarch64 (whose {@code struct stat} layouts this knows); elsewhere,
 * or when a call fails, callers get the conservative answer: everything is data, size unknown.
 */
final class SparseFiles {
    private static final int SEEK_DATA = 3;
    private static final int SEEK_HOLE = 4;
    private static final int ENXIO = 6;
    private static final int O_RDONLY_CLOEXEC = 0x80000;
    /** Offset of st_blocks in struct stat on Linux x86_64 and aarch64 (both 64), and the struct size. */
    private static final long ST_BLOCKS_OFFSET = 64;

    private static final long STAT_SIZE = 144;
    /** Bound on extents per call so that a file of millions of tiny holes needs several calls. */
    private static final int MAX_EXTENTS = 4096;

    private static final boolean SUPPORTED;
    private static final MethodHandle OPEN;
    private static final MethodHandle LSEEK;
    private static final MethodHandle CLOSE;
    private static final MethodHandle STAT;
    private static final StructLayout CAPTURE;
    private static final VarHandle ERRNO;

    static {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        MethodHandle open = null;
        MethodHandle lseek = null;
        MethodHandle close = null;
        MethodHandle stat = null;
        StructLayout capture = null;
        VarHandle errno = null;
        boolean ok = false;
        if (os.contains("linux") && (arch.equals("amd64") || arch.equals("x86_64") || arch.equals("aarch64"))) {
            try {
                Linker linker = Linker.nativeLinker();
                var libc = linker.defaultLookup();
                capture = Linker.Option.captureStateLayout();
                errno = capture.varHandle(MemoryLayout.PathElement.groupElement("errno"));
                Linker.Option captureErrno = Linker.Option.captureCallState("errno");
                open = linker.downcallHandle(
                        libc.find("open").orElseThrow(),
                        FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT),
                        Linker.Option.firstVariadicArg(2));
                lseek = linker.downcallHandle(
                        libc.find("lseek").orElseThrow(),
                        FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT),
                        captureErrno);
                close = linker.downcallHandle(
                        libc.find("close").orElseThrow(), FunctionDescriptor.of(JAVA_INT, JAVA_INT));
                stat = linker.downcallHandle(
                        libc.find("stat").orElseThrow(), FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
                ok = true;
            } catch (RuntimeException | LinkageError e) {
                ok = false;
            }
        }
        SUPPORTED = ok;
        OPEN = open;
        LSEEK = lseek;
        CLOSE = close;
        STAT = stat;
        CAPTURE = capture;
        ERRNO = errno;
    }

    private SparseFiles() {}

    /** Bytes the file occupies on disk (st_blocks * 512), or -1 when unknown. */
    static long allocatedBytes(String filename) {
        if (!SUPPORTED) {
            return -1;
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(STAT_SIZE, 8);
            int rc = (int) STAT.invokeExact(arena.allocateFrom(filename), buf);
            return rc == 0 ? buf.get(JAVA_LONG, ST_BLOCKS_OFFSET) * 512 : -1;
        } catch (Throwable t) {
            return -1;
        }
    }

    /**
     * Data and hole runs of {@code [offset, offset+length)}, contiguous from {@code offset}, with
     * host offsets equal to file offsets; null when the host cannot tell (the caller then reports data).
     */
    static List<Extent> status(String filename, long offset, long length) {
        if (!SUPPORTED) {
            return null;
        }
        try (Arena arena = Arena.ofConfined()) {
            int fd = (int) OPEN.invokeExact(arena.allocateFrom(filename), O_RDONLY_CLOEXEC, 0);
            if (fd < 0) {
                return null;
            }
            try {
                MemorySegment state = arena.allocate(CAPTURE);
                List<Extent> out = new ArrayList<>();
                long pos = offset;
                long end = offset + length;
                while (pos < end && out.size() < MAX_EXTENTS) {
                    long data = (long) LSEEK.invokeExact(state, fd, pos, SEEK_DATA);
                    if (data < 0) {
                        if ((int) ERRNO.get(state, 0L) != ENXIO) {
                            return out.isEmpty() ? null : out;
                        }
                        // no data at or after pos: a hole to the end (or past the end of the file)
                        data = end;
                    }
                    if (data > pos) {
                        long holeEnd = Math.min(data, end);
                        out.add(new Extent(pos, holeEnd - pos, Extent.Kind.ZERO, 0, pos, filename));
                        pos = holeEnd;
                        continue;
                    }
                    long hole = (long) LSEEK.invokeExact(state, fd, pos, SEEK_HOLE);
                    if (hole <= pos) {
                        return out.isEmpty() ? null : out;
                    }
                    long dataEnd = Math.min(hole, end);
                    out.add(new Extent(pos, dataEnd - pos, Extent.Kind.DATA, 0, pos, filename));
                    pos = dataEnd;
                }
                return out;
            } finally {
                int ignored = (int) CLOSE.invokeExact(fd);
            }
        } catch (Throwable t) {
            return null;
        }
    }
}
