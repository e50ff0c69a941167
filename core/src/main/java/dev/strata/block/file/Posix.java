package dev.strata.block.file;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import dev.strata.block.BlockException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.util.Locale;

/**
 * The few Linux libc calls the file driver needs that {@link java.nio.channels.FileChannel} does
 * not offer (OFD byte locks, SEEK_DATA/SEEK_HOLE, fallocate, fstat, ftruncate), bound through the
 * FFM API.
 *
 * <p>Only Linux on x86_64 and aarch64 is bound: the constants and the {@code struct flock} and
 * {@code struct stat} offsets below are those two ABIs' (they agree on everything used here except
 * {@code st_mode}). Elsewhere {@link #AVAILABLE} is false and the driver falls back to plain
 * FileChannel behaviour. Every failure is a {@link BlockException} carrying the call's errno, so
 * callers branch on {@code errno()} exactly as C code branches on {@code -errno}.
 */
// restricted: binding native code is this class's purpose; the launcher, the jar manifest and
// surefire enable native access for it
@SuppressWarnings("restricted")
final class Posix {
    private Posix() {}

    static final int O_RDONLY = 0;
    static final int O_RDWR = 2;
    /** O_CREAT on Linux (x86-64 and aarch64 alike). */
    static final int O_CREAT = 0100;

    static final int O_CLOEXEC = 0x80000;

    static final int F_OFD_GETLK = 36;
    static final int F_OFD_SETLK = 37;
    static final short F_RDLCK = 0;
    static final short F_WRLCK = 1;
    static final short F_UNLCK = 2;

    static final int SEEK_SET = 0;
    static final int SEEK_DATA = 3;
    static final int SEEK_HOLE = 4;

    static final int FALLOC_FL_KEEP_SIZE = 0x01;
    static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    static final int FALLOC_FL_ZERO_RANGE = 0x10;

    static final int ENOENT = 2;
    static final int EINTR = 4;
    static final int ENXIO = 6;
    static final int EAGAIN = 11;
    static final int EACCES = 13;
    static final int EINVAL = 22;
    static final int EXDEV = 18;
    static final int ENOSYS = 38;
    static final int EOPNOTSUPP = 95;

    private static final int S_IFMT = 0xf000;
    private static final int S_IFREG = 0x8000;

    /** {@code struct flock} of 64-bit Linux: short, short, 4 padding bytes, off_t, off_t, pid_t, padding. */
    private static final StructLayout FLOCK = MemoryLayout.structLayout(
            JAVA_SHORT.withName("l_type"),
            JAVA_SHORT.withName("l_whence"),
            MemoryLayout.paddingLayout(4),
            JAVA_LONG.withName("l_start"),
            JAVA_LONG.withName("l_len"),
            JAVA_INT.withName("l_pid"),
            MemoryLayout.paddingLayout(4));

    private static final VarHandle L_TYPE = FLOCK.varHandle(MemoryLayout.PathElement.groupElement("l_type"));
    private static final VarHandle L_WHENCE = FLOCK.varHandle(MemoryLayout.PathElement.groupElement("l_whence"));
    private static final VarHandle L_START = FLOCK.varHandle(MemoryLayout.PathElement.groupElement("l_start"));
    private static final VarHandle L_LEN = FLOCK.varHandle(MemoryLayout.PathElement.groupElement("l_len"));

    // struct stat is 144 bytes on x86_64 and 128 on aarch64; st_size and st_blocks sit at the same
    // offsets on both, st_mode does not
    private static final long STAT_SIZE = 256;
    private static final long ST_SIZE = 48;
    private static final long ST_BLOCKS = 64;
    private static final long ST_MODE = "aarch64".equals(System.getProperty("os.arch")) ? 16 : 24;

    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));

    /**
     * Whether the calls can be bound: Linux on x86_64 or aarch64, with native access allowed. Each
     * call is bound the first time it is used, since binding costs milliseconds a call and a short
     * command needs only some of them. The optional ones ({@link #canCopyFileRange},
     * sync_file_range, strerror) bind to null when libc lacks them; glibc has all the others.
     */
    static final boolean AVAILABLE;

    private static final Linker LINKER;
    private static final SymbolLookup LIBC;
    private static final Linker.Option ERRNO_OPTION = Linker.Option.captureCallState("errno");
    /** close, bound with the class: the call every open needs, and the check that binding works. */
    private static final MethodHandle CLOSE;

    static {
        Linker linker = null;
        SymbolLookup libc = null;
        MethodHandle close = null;
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        if (os.startsWith("linux") && (arch.equals("amd64") || arch.equals("x86_64") || arch.equals("aarch64"))) {
            try {
                linker = Linker.nativeLinker();
                libc = linker.defaultLookup();
                close = bind(linker, libc, "close", FunctionDescriptor.of(JAVA_INT, JAVA_INT), ERRNO_OPTION);
            } catch (IllegalArgumentException | UnsupportedOperationException | IllegalCallerException e) {
                // a missing symbol, or native access denied: run without the native layer
                close = null;
            }
        }
        AVAILABLE = close != null;
        LINKER = linker;
        LIBC = libc;
        CLOSE = close;
    }

    /**
     * Binds the calls nearly every command makes (open, lock, stat, seek, close) now, so that a
     * thread started early can take their cost off the command's path.
     */
    static void bindCommonCalls() {
        if (AVAILABLE) {
            Open.HANDLE.type();
            Fcntl.HANDLE.type();
            Fstat.HANDLE.type();
            Lseek.HANDLE.type();
        }
    }

    // one holder class per call: the JVM initialises (binds) each on its first use

    private static final class Open {
        static final MethodHandle HANDLE =
                bindVariadic("open", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
    }

    private static final class Fcntl {
        static final MethodHandle HANDLE =
                bindVariadic("fcntl", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS));
    }

    private static final class Lseek {
        static final MethodHandle HANDLE =
                bind("lseek", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT), ERRNO_OPTION);
    }

    private static final class Fallocate {
        static final MethodHandle HANDLE = bind(
                "fallocate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG), ERRNO_OPTION);
    }

    private static final class Fstat {
        static final MethodHandle HANDLE =
                bind("fstat", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS), ERRNO_OPTION);
    }

    private static final class Ftruncate {
        static final MethodHandle HANDLE =
                bind("ftruncate", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG), ERRNO_OPTION);
    }

    /** copy_file_range, null when libc lacks it: copies then go through memory. */
    private static final class CopyFileRange {
        static final MethodHandle HANDLE = bindIfPresent(
                "copy_file_range",
                FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT),
                ERRNO_OPTION);
    }

    /** sync_file_range, null when libc lacks it: writeback then starts only when the kernel wants. */
    private static final class SyncFileRange {
        static final MethodHandle HANDLE = bindIfPresent(
                "sync_file_range",
                FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT),
                ERRNO_OPTION);
    }

    private static final class Strerror {
        static final MethodHandle HANDLE = bindIfPresent("strerror", FunctionDescriptor.of(ADDRESS, JAVA_INT));
    }

    static final int SYNC_FILE_RANGE_WRITE = 2;

    private static MethodHandle bind(String name, FunctionDescriptor fd, Linker.Option... options) {
        return bind(LINKER, LIBC, name, fd, options);
    }

    /** open and fcntl: variadic in C, so their third argument is passed as a variadic one. */
    private static MethodHandle bindVariadic(String name, FunctionDescriptor fd) {
        return bind(name, fd, ERRNO_OPTION, Linker.Option.firstVariadicArg(2));
    }

    private static MethodHandle bind(
            Linker linker, SymbolLookup libc, String name, FunctionDescriptor fd, Linker.Option... options) {
        MemorySegment symbol =
                libc.find(name).orElseThrow(() -> new IllegalArgumentException("libc has no symbol " + name));
        return linker.downcallHandle(symbol, fd, options);
    }

    /** {@link #bind}, or null without the native layer or when libc lacks the symbol (calls the caller can do without). */
    private static MethodHandle bindIfPresent(String name, FunctionDescriptor fd, Linker.Option... options) {
        return AVAILABLE && LIBC.find(name).isPresent() ? bind(name, fd, options) : null;
    }

    /** What {@link #fstat} reports. */
    record Stat(long size, long blocks, int mode) {
        boolean isRegularFile() {
            return (mode & S_IFMT) == S_IFREG;
        }

        /** Bytes the file occupies on the host: st_blocks counts 512-byte units whatever st_blksize is. */
        long allocatedBytes() {
            return blocks * 512;
        }
    }

    /** One native call: returns the C result; {@code errnoState} receives errno. */
    @FunctionalInterface
    private interface NativeCall {
        long invoke(Arena arena, MemorySegment errnoState) throws Throwable;
    }

    /**
     * Runs {@code call} with a fresh arena; a negative result becomes a BlockException with the
     * errno (after retrying EINTR when {@code retryInterrupted}).
     */
    private static long call(String name, boolean retryInterrupted, NativeCall call) throws BlockException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment state = arena.allocate(CAPTURE);
            while (true) {
                long r = call.invoke(arena, state);
                if (r >= 0) {
                    return r;
                }
                int errno = (int) ERRNO.get(state, 0L);
                if (!retryInterrupted || errno != EINTR) {
                    throw new BlockException(name + ": " + strerror(errno), errno);
                }
            }
        } catch (BlockException e) {
            throw e;
        } catch (Error e) {
            throw e;
        } catch (Throwable t) {
            throw new BlockException(name + " failed: " + t, t);
        }
    }

    /** Opens {@code path} with {@code flags} (O_CLOEXEC is added); returns the new descriptor. */
    static int open(String path, int flags) throws BlockException {
        return open(path, flags, 0);
    }

    /** {@link #open(String, int)} with the permission bits a file it creates gets (before the umask). */
    static int open(String path, int flags, int mode) throws BlockException {
        return (int) call("open", false, (arena, state) ->
                (int) Open.HANDLE.invokeExact(state, arena.allocateFrom(path), flags | O_CLOEXEC, mode));
    }

    static void close(int fd) throws BlockException {
        // Linux releases the descriptor even when close reports an error, so never retry
        call("close", false, (arena, state) -> (int) CLOSE.invokeExact(state, fd));
    }

    /**
     * Sets ({@code F_RDLCK}/{@code F_WRLCK}) or drops ({@code F_UNLCK}) an OFD lock on {@code [start,
     * start+len)} without waiting; a conflict fails with EAGAIN.
     */
    static void setLock(int fd, short type, long start, long len) throws BlockException {
        call("fcntl(F_OFD_SETLK)", false, (arena, state) ->
                (int) Fcntl.HANDLE.invokeExact(state, fd, F_OFD_SETLK, flock(arena, type, start, len)));
    }

    /**
     * Whether a lock of {@code type} on {@code [start, start+len)} would conflict with a lock held
     * through another open file description (locks of {@code fd}'s own description never count).
     */
    static boolean lockConflicts(int fd, short type, long start, long len) throws BlockException {
        long found = call("fcntl(F_OFD_GETLK)", false, (arena, state) -> {
            MemorySegment fl = flock(arena, type, start, len);
            int r = (int) Fcntl.HANDLE.invokeExact(state, fd, F_OFD_GETLK, fl);
            // on success the kernel leaves F_UNLCK in l_type, or the type of the first conflicting lock
            return r < 0 ? r : (short) L_TYPE.get(fl, 0L);
        });
        return found != F_UNLCK;
    }

    private static MemorySegment flock(Arena arena, short type, long start, long len) {
        // allocate() zeroes the struct, and F_OFD_GETLK insists on l_pid == 0
        MemorySegment fl = arena.allocate(FLOCK);
        L_TYPE.set(fl, 0L, type);
        L_WHENCE.set(fl, 0L, (short) SEEK_SET);
        L_START.set(fl, 0L, start);
        L_LEN.set(fl, 0L, len);
        return fl;
    }

    /** lseek; with SEEK_DATA/SEEK_HOLE an offset in the trailing hole or past EOF fails with ENXIO. */
    static long lseek(int fd, long offset, int whence) throws BlockException {
        return call("lseek", false, (arena, state) -> (long) Lseek.HANDLE.invokeExact(state, fd, offset, whence));
    }

    /** fallocate, retried on EINTR; an unsupported mode fails with EOPNOTSUPP (or ENOSYS, ENODEV). */
    static void fallocate(int fd, int mode, long offset, long len) throws BlockException {
        call("fallocate", true, (arena, state) -> (int) Fallocate.HANDLE.invokeExact(state, fd, mode, offset, len));
    }

    static void ftruncate(int fd, long length) throws BlockException {
        call("ftruncate", true, (arena, state) -> (int) Ftruncate.HANDLE.invokeExact(state, fd, length));
    }

    /** Whether {@link #copyFileRange} is bound. */
    static boolean canCopyFileRange() {
        return CopyFileRange.HANDLE != null;
    }

    /**
     * copy_file_range from {@code [inPos, inPos+len)} of {@code in} to {@code outPos} of {@code
     * out}, retried on EINTR; returns the bytes copied (0 at the end of {@code in}). Files the
     * kernel cannot copy between fail with EXDEV, EINVAL, EOPNOTSUPP or ENOSYS.
     */
    static long copyFileRange(int in, long inPos, int out, long outPos, long len) throws BlockException {
        return call("copy_file_range", true, (arena, state) -> {
            MemorySegment offIn = arena.allocateFrom(JAVA_LONG, inPos);
            MemorySegment offOut = arena.allocateFrom(JAVA_LONG, outPos);
            return (long) CopyFileRange.HANDLE.invokeExact(state, in, offIn, out, offOut, len, 0);
        });
    }

    /**
     * sync_file_range over {@code [offset, offset+len)} ({@code len} 0: to the end of the file),
     * retried on EINTR; without the call bound, does nothing.
     */
    static void syncFileRange(int fd, long offset, long len, int flags) throws BlockException {
        if (SyncFileRange.HANDLE != null) {
            call("sync_file_range", true, (arena, state) ->
                    (int) SyncFileRange.HANDLE.invokeExact(state, fd, offset, len, flags));
        }
    }

    static Stat fstat(int fd) throws BlockException {
        long[] fields = new long[3];
        call("fstat", false, (arena, state) -> {
            MemorySegment st = arena.allocate(STAT_SIZE, 8);
            int r = (int) Fstat.HANDLE.invokeExact(state, fd, st);
            fields[0] = st.get(JAVA_LONG, ST_SIZE);
            fields[1] = st.get(JAVA_LONG, ST_BLOCKS);
            fields[2] = st.get(JAVA_INT, ST_MODE);
            return r;
        });
        return new Stat(fields[0], fields[1], (int) fields[2]);
    }

    /** The C library's text for an errno ("No such file or directory"). */
    static String strerror(int errno) {
        if (Strerror.HANDLE != null) {
            try {
                // glibc returns a constant string for every known errno, so reading it needs no lock
                MemorySegment s = (MemorySegment) Strerror.HANDLE.invokeExact(errno);
                if (!s.equals(MemorySegment.NULL)) {
                    return s.reinterpret(1024).getString(0);
                }
            } catch (Throwable t) {
                // fall through to the number
            }
        }
        return "errno " + errno;
    }
}
