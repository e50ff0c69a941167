package dev.strata.block.file;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.FileBacked;
import dev.strata.block.HostCopy;
import dev.strata.block.HostFile;
import dev.strata.block.HostRun;
import dev.strata.block.OpenContext;
import dev.strata.block.OpenFlags;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.WritableByteChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The "file" protocol driver: a host file accessed with positional {@link FileChannel} I/O, plus a
 * native descriptor of the same file for what FileChannel cannot do (image locks, holes, fstat).
 *
 * <p>The file is growable: a format driver above it writes past the end to allocate, and reads
 * past the end return zeros, as QEMU's file-posix does. Zero writes with unmap and discards punch
 * holes, so images stay sparse; block status reports holes (and everything past the end) as
 * {@link Extent.Kind#ZERO} with their host offset, as {@code qemu-img map} does for a raw file.
 *
 * <p>While open, the node holds QEMU's image lock on the file ({@link ImageLock}), so QEMU
 * processes and other nodes that would conflict are refused, and so is this open when they hold
 * the file. Option {@code locking=on|off|auto} (auto: lock where OFD locks work).
 *
 * <p>The native descriptor is a separate open file description of the same inode (the channel is
 * opened through {@code /proc/self/fd}, so a rename between the two opens cannot split them). Off
 * Linux, or where the native layer cannot be bound, the driver runs on the channel alone: no
 * locks, no holes (everything inside the file is DATA), zeros are written.
 *
 * <p>Copy offload ({@link HostFile}): data moves file to file with {@code copy_file_range} and
 * to sockets with {@code sendfile}, so a backup or a convert never reads it into the process;
 * where the kernel cannot (another file system, no native layer) it goes through memory.
 *
 * <p>Concurrency: every call may run on any thread at once; the host serialises them. Growing the
 * file never shrinks it, even if a concurrent write extended it further meanwhile.
 */
public final class FileDriver implements BlockDriver, FileBacked, HostFile {
    private static final int ZERO_CHUNK = 1 << 20;
    private static final ByteBuffer ZEROS =
            ByteBuffer.allocateDirect(ZERO_CHUNK).asReadOnlyBuffer();
    /** Extents one block-status call collects before returning; callers loop for the rest. */
    private static final int MAX_EXTENTS = 1024;

    /** The {@code locking} option: QEMU's OnOffAuto. */
    public enum Locking {
        /** Lock, and refuse to open where OFD locks do not work. */
        ON,
        /** Take no locks and check none. */
        OFF,
        /** Lock where OFD locks work, else run unlocked (the default). */
        AUTO;

        /** Parses the option's value as QEMU does; null means the default. */
        public static Locking parse(String value) throws BlockException {
            return switch (value) {
                case null -> AUTO;
                case "on" -> ON;
                case "off" -> OFF;
                case "auto" -> AUTO;
                default -> throw new BlockException("invalid parameter value: " + value, BlockException.EINVAL);
            };
        }
    }

    // set at open, never changed
    private final String filename;
    private final FileChannel channel;
    /** The native descriptor, or -1 when the native layer is unavailable. */
    private final int fd;

    private final boolean readOnly;
    private final boolean locked;

    // cleared the first time the host refuses the operation, as QEMU's has_discard/has_write_zeroes
    private volatile boolean canPunch;
    private volatile boolean canZeroRange;
    private volatile boolean canSeekHoles;

    private final AtomicBoolean closed = new AtomicBoolean();

    /**
     * QEMU's write_gen and flushed_gen: changes to the file that have completed, and how many of
     * them the last completed flush covered. A flush with nothing new to cover skips fdatasync (a
     * guest that flushes again with nothing written in between costs a syscall that waits for the
     * disk). A change counts only once it has completed, so a flush that starts before it never
     * claims to cover it.
     */
    private final AtomicLong changes = new AtomicLong();

    private final AtomicLong flushedChanges = new AtomicLong();

    /** fdatasync calls made (tests see the skip through it). */
    private final AtomicLong syncs = new AtomicLong();

    private FileDriver(String filename, FileChannel channel, int fd, boolean readOnly, boolean locked) {
        this.filename = filename;
        this.channel = channel;
        this.fd = fd;
        this.readOnly = readOnly;
        this.locked = locked;
        this.canPunch = fd >= 0;
        this.canZeroRange = fd >= 0;
        this.canSeekHoles = fd >= 0;
    }

    /**
     * Binds the native calls every open makes now (on a start-up thread of the caller's choosing)
     * rather than at the first open; the rest bind at their first use. Harmless to call more than
     * once, or from several threads.
     */
    public static void bindNativeCalls() {
        Posix.bindCommonCalls();
    }

    /** Opens from options: {@code filename} (required), {@code locking}; {@code aio} and others are ignored. */
    public static FileDriver open(BlockOptions options, OpenContext context) throws IOException {
        String filename = options.requireString("filename");
        Locking locking = Locking.parse(options.string("locking").orElse(null));
        options.get("aio");
        options.get("aio-max-batch");
        options.get("drop-cache");
        options.get("pr-manager");
        options.get("x-check-cache-dropped");
        return open(filename, context.flags(), locking);
    }

    /** Opens with the default locking (auto) and without force-share. */
    public static FileDriver open(String filename, boolean readOnly) throws IOException {
        return open(filename, readOnly ? OpenFlags.READ_ONLY : OpenFlags.READ_WRITE, Locking.AUTO);
    }

    /**
     * Opens {@code filename}, which must be a regular file, and takes the image lock that {@code
     * flags} call for.
     *
     * @throws BlockException with QEMU's text: "Could not open 'x': No such file or directory",
     *     "'file' driver requires 'x' to be a regular file", or a lock conflict ("Failed to get
     *     \"write\" lock" and, on the next line, "Is another process using the image [x]?")
     */
    public static FileDriver open(String filename, OpenFlags flags, Locking locking) throws IOException {
        FileOpening.Opened o = FileOpening.open(filename, flags, locking);
        return new FileDriver(filename, o.channel(), o.fd(), flags.readOnly(), o.locked());
    }

    /**
     * QEMU's file create: makes {@code filename} an empty file of {@code size} bytes (sparse),
     * creating it if missing, under the image lock QEMU's create takes, so that a file another
     * process or node holds is refused unchanged ("Failed to get \"write\" lock").
     */
    public static void create(String filename, long size) throws IOException {
        FileOpening.create(filename, size);
    }

    @Override
    public String format() {
        return "file";
    }

    @Override
    public String filename() {
        return filename;
    }

    public FileChannel channel() {
        return channel;
    }

    /** Whether this node holds the image lock (false with locking=off, or where OFD locks do not work). */
    public boolean locked() {
        return locked;
    }

    @Override
    public long length() throws IOException {
        return channel.size();
    }

    @Override
    public boolean growable() {
        return true;
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        long pos = offset;
        while (dst.hasRemaining()) {
            int n;
            try {
                n = channel.read(dst, pos);
            } catch (IOException e) {
                throw hostError(e);
            }
            if (n < 0) {
                // past the end of the file: zeros, as file-posix returns for short reads
                while (dst.hasRemaining()) {
                    int chunk = Math.min(dst.remaining(), ZERO_CHUNK);
                    dst.put(ZEROS.duplicate().limit(chunk));
                }
                return;
            }
            pos += n;
        }
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        try {
            put(offset, src);
        } finally {
            // a write that failed part way may still have changed the file
            changes.incrementAndGet();
        }
    }

    /** Writes all of {@code src} at {@code offset}; callers count the change. */
    private void put(long offset, ByteBuffer src) throws IOException {
        long pos = offset;
        try {
            while (src.hasRemaining()) {
                pos += channel.write(src, pos);
            }
        } catch (IOException e) {
            throw hostError(e);
        }
    }

    /** Starts writeback of the whole file's dirty pages (sync_file_range WRITE). */
    @Override
    public void startWriteback() throws IOException {
        if (fd >= 0) {
            Posix.syncFileRange(fd, 0, 0, Posix.SYNC_FILE_RANGE_WRITE);
        }
    }

    /**
     * The file's own bytes, without asking the file's size: a run that reaches past the end reads
     * zeros there, whether through the kernel (a copy ends at the end and the rest goes through
     * {@link #read}) or not.
     */
    @Override
    public HostRun hostRun(long offset, long length) {
        return new HostRun(this, offset, length);
    }

    @Override
    public boolean writeHost(long offset, HostRun run) throws IOException {
        try {
            copyIn(offset, run);
        } finally {
            changes.incrementAndGet();
        }
        return true;
    }

    private void copyIn(long offset, HostRun run) throws IOException {
        long done = 0;
        while (done < run.length()) {
            long n = run.file().copyTo(run.offset() + done, run.length() - done, this, offset + done);
            if (n == 0) {
                long at = offset + done;
                HostCopy.throughMemory(
                        new HostRun(run.file(), run.offset() + done, run.length() - done),
                        (pos, buf) -> put(at + pos, buf));
                break;
            }
            done += n;
        }
    }

    @Override
    public long copyTo(long pos, long len, HostFile dst, long dstPos) throws IOException {
        if (!(dst instanceof FileDriver to) || fd < 0 || to.fd < 0 || !Posix.canCopyFileRange()) {
            return 0;
        }
        try {
            return Posix.copyFileRange(fd, pos, to.fd, dstPos, len);
        } catch (BlockException e) {
            return switch (e.errno()) {
                // files the kernel cannot copy between: the caller copies through memory
                case Posix.EXDEV, Posix.EINVAL, Posix.EOPNOTSUPP, Posix.ENOSYS -> 0;
                default -> throw new BlockException(BlockException.strerror(e.errno()), e.errno());
            };
        }
    }

    @Override
    public void sendTo(long pos, long len, WritableByteChannel out) throws IOException {
        long p = pos;
        long end = pos + len;
        while (p < end) {
            long size = channel.size();
            long n = p < size ? channel.transferTo(p, Math.min(end, size) - p, out) : 0;
            if (n <= 0) {
                // past the end of the file (zeros), or a channel the JDK cannot send to
                HostCopy.throughMemory(new HostRun(this, p, end - p), (at, piece) -> {
                    while (piece.hasRemaining()) {
                        out.write(piece);
                    }
                });
                return;
            }
            p += n;
        }
    }

    /**
     * A host I/O error as the block layer reports it: with its errno, so that jobs and NBD replies
     * say "No space left on device" and act on ENOSPC as QEMU does. The JDK gives only strerror's
     * text, which is matched back to the errno here, the one place host errors enter.
     */
    static BlockException hostError(IOException e) {
        if (e instanceof BlockException b) {
            return b;
        }
        String m = String.valueOf(e.getMessage());
        for (int errno : new int[] {BlockException.ENOSPC, 122, 30, BlockException.EFBIG, BlockException.EIO}) {
            if (m.contains(BlockException.strerror(errno))) {
                return new BlockException(BlockException.strerror(errno), errno);
            }
        }
        return new BlockException(m, BlockException.EIO);
    }

    /**
     * Zeroes the range: with {@code mayUnmap} by punching a hole, else with FALLOC_FL_ZERO_RANGE
     * (which keeps the blocks allocated), else by writing zeros. Past the end of the file nothing
     * needs zeroing: the file grows to the end of the range and the part past the old end is
     * left (or made) a hole, with or without {@code mayUnmap}, since nothing was allocated there.
     */
    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        try {
            zeroes(offset, length, mayUnmap);
        } finally {
            changes.incrementAndGet();
        }
    }

    private void zeroes(long offset, long length, boolean mayUnmap) throws IOException {
        long end = offset + length;
        long size = channel.size();
        long insideEnd = Math.min(end, size);
        if (insideEnd > offset && !zeroInPlace(offset, insideEnd - offset, mayUnmap)) {
            long pos = offset;
            while (pos < insideEnd) {
                int chunk = (int) Math.min(ZERO_CHUNK, insideEnd - pos);
                put(pos, ZEROS.duplicate().limit(chunk));
                pos += chunk;
            }
        }
        if (end > size) {
            growTo(end);
            // growing allocated the last block; the whole extension reads as zeros either way
            long from = Math.max(offset, size);
            punch(from, end - from);
        }
    }

    /** Zeroes inside the file without writing; false when the host cannot. */
    private boolean zeroInPlace(long offset, long length, boolean mayUnmap) throws IOException {
        if (mayUnmap && punch(offset, length)) {
            return true;
        }
        if (canZeroRange && !fallocate(Posix.FALLOC_FL_ZERO_RANGE, offset, length)) {
            canZeroRange = false;
        }
        return canZeroRange;
    }

    /** Deallocates inside the file; the range then reads as zeros. False when the host cannot. */
    private boolean punch(long offset, long length) throws IOException {
        // partial blocks at either end are zeroed by the kernel, so the whole range reads as zeros
        if (canPunch && !fallocate(Posix.FALLOC_FL_PUNCH_HOLE | Posix.FALLOC_FL_KEEP_SIZE, offset, length)) {
            canPunch = false;
        }
        return canPunch;
    }

    /** fallocate on the native descriptor; false when the host does not support {@code mode} here. */
    private boolean fallocate(int mode, long offset, long length) throws BlockException {
        try {
            Posix.fallocate(fd, mode, offset, length);
            return true;
        } catch (BlockException e) {
            if (!unsupported(e)) {
                throw e;
            }
            return false;
        }
    }

    private static boolean unsupported(BlockException e) {
        return switch (e.errno()) {
            case Posix.EOPNOTSUPP, Posix.ENOSYS, 19 /* ENODEV */, 25 /* ENOTTY */ -> true;
            default -> false;
        };
    }

    /**
     * Makes the file at least {@code newSize} long without allocating the range: fallocate of the
     * last byte never shrinks a file that a concurrent write made longer, where ftruncate would.
     */
    private void growTo(long newSize) throws IOException {
        if (fd >= 0 && fallocate(0, newSize - 1, 1)) {
            return;
        }
        if (channel.size() < newSize) {
            // a one-byte zero write at the end grows the file sparsely
            channel.write(ByteBuffer.wrap(new byte[1]), newSize - 1);
        }
    }

    /** Punches a hole where the host can; otherwise does nothing, which a discard allows. */
    @Override
    public void discard(long offset, long length) throws IOException {
        try {
            long insideEnd = Math.min(offset + length, channel.size());
            if (insideEnd > offset) {
                punch(offset, insideEnd - offset);
            }
        } finally {
            changes.incrementAndGet();
        }
    }

    @Override
    public void flush() throws IOException {
        if (readOnly) {
            return;
        }
        long covering = changes.get();
        if (covering == flushedChanges.get()) {
            return; // every completed change is already on the disk
        }
        try {
            // fdatasync, as QEMU's file-posix: the data and what reading it back needs (the
            // size, the allocation), not the timestamps
            syncs.incrementAndGet();
            channel.force(false);
        } catch (IOException e) {
            throw hostError(e);
        }
        flushedChanges.accumulateAndGet(covering, Math::max);
    }

    /** How many times {@link #flush} went to the disk (fdatasync), for tests. */
    long syncCount() {
        return syncs.get();
    }

    /**
     * Holes (SEEK_HOLE) and everything past the end are {@link Extent.Kind#ZERO}, the rest DATA;
     * both carry their host offset, which for a file is the offset itself.
     */
    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        long end = offset + length;
        long size = channel.size();
        List<Extent> out = new ArrayList<>();
        long pos = offset;
        while (pos < end && out.size() < MAX_EXTENTS) {
            if (pos >= size) {
                add(out, pos, end, Extent.Kind.ZERO);
                break;
            }
            long limit = Math.min(end, size);
            long next = limit;
            Extent.Kind kind = Extent.Kind.DATA;
            if (canSeekHoles) {
                long data = seek(pos, Posix.SEEK_DATA);
                if (data < 0 || data > pos) {
                    // no data at pos: a hole up to the next data, or to the end of the file
                    kind = Extent.Kind.ZERO;
                    next = data < 0 ? limit : Math.min(data, limit);
                } else {
                    long hole = seek(pos, Posix.SEEK_HOLE);
                    // a hole at pos means the data was just punched: reporting DATA is the safe answer
                    next = hole > pos ? Math.min(hole, limit) : limit;
                }
            }
            add(out, pos, next, kind);
            pos = next;
        }
        return out;
    }

    /** lseek with SEEK_DATA/SEEK_HOLE; -1 for ENXIO (no data at or after offset). */
    private long seek(long offset, int whence) throws IOException {
        try {
            return Posix.lseek(fd, offset, whence);
        } catch (BlockException e) {
            if (e.errno() == Posix.ENXIO) {
                return -1;
            }
            if (e.errno() == Posix.EINVAL) {
                // no SEEK_DATA support here: from now on the whole file is data, which is never wrong
                canSeekHoles = false;
                return whence == Posix.SEEK_DATA ? offset : Long.MAX_VALUE;
            }
            throw e;
        }
    }

    private void add(List<Extent> out, long from, long to, Extent.Kind kind) {
        if (!out.isEmpty() && out.getLast().kind() == kind) {
            Extent last = out.removeLast();
            out.add(new Extent(last.offset(), to - last.offset(), kind, 0, last.hostOffset(), filename));
        } else {
            out.add(new Extent(from, to - from, kind, 0, from, filename));
        }
    }

    @Override
    public void truncate(long newLength) throws IOException {
        try {
            resize(newLength);
        } finally {
            changes.incrementAndGet();
        }
    }

    private void resize(long newLength) throws IOException {
        try {
            if (fd >= 0) {
                // ftruncate both shrinks and grows sparsely, as qemu-img resize does on a raw file
                Posix.ftruncate(fd, newLength);
            } else if (newLength < channel.size()) {
                channel.truncate(newLength);
            } else {
                growTo(newLength);
            }
        } catch (BlockException e) {
            // QEMU's wording (file-posix): "Could not resize file: File too large"
            throw new BlockException("Could not resize file: " + BlockException.strerror(e.errno()), e.errno());
        }
    }

    /** Bytes the file occupies on the host (st_blocks), or -1 without the native layer. */
    @Override
    public long allocatedFileSize() throws IOException {
        return fd >= 0 ? Posix.fstat(fd).allocatedBytes() : -1;
    }

    /** Closes the channel and the native descriptor; the latter drops the image lock. */
    @Override
    public void close() throws IOException {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        try {
            channel.close();
        } finally {
            if (fd >= 0) {
                Posix.close(fd);
            }
        }
    }
}
