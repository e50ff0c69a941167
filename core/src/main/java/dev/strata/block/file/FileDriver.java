package dev.strata.block.file;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.FileBacked;
import dev.strata.block.OpenContext;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

/**
 * The "file" protocol driver: a host file accessed with positional {@link FileChannel} I/O.
 *
 * <p>The file is growable: a format driver above it writes past the end to allocate, and reads
 * past the end return zeros, as QEMU's file-posix does. Zero writes and discards punch holes where
 * the host allows, so images stay sparse.
 */
public final class FileDriver implements BlockDriver, FileBacked {
    private static final int ZERO_CHUNK = 1 << 20;
    private static final ByteBuffer ZEROS =
            ByteBuffer.allocateDirect(ZERO_CHUNK).asReadOnlyBuffer();

    // set at open, never changed
    private final String filename;
    private final FileChannel channel;
    private final boolean readOnly;

    private FileDriver(String filename, FileChannel channel, boolean readOnly) {
        this.filename = filename;
        this.channel = channel;
        this.readOnly = readOnly;
    }

    /** Opens from options: {@code filename} (required), {@code locking}, {@code aio} (ignored). */
    public static FileDriver open(BlockOptions options, OpenContext context) throws IOException {
        String filename = options.requireString("filename");
        options.get("aio");
        options.get("locking");
        options.get("pr-manager");
        options.get("x-check-cache-dropped");
        boolean readOnly = context.readOnly();
        return open(filename, readOnly);
    }

    public static FileDriver open(String filename, boolean readOnly) throws IOException {
        Path path = Path.of(filename);
        try {
            FileChannel ch = readOnly
                    ? FileChannel.open(path, StandardOpenOption.READ)
                    : FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
            return new FileDriver(filename, ch, readOnly);
        } catch (NoSuchFileException e) {
            throw new BlockException("Could not open '" + filename + "': No such file or directory");
        } catch (AccessDeniedException e) {
            throw new BlockException("Could not open '" + filename + "': Permission denied", BlockException.EPERM);
        } catch (java.nio.file.FileSystemException e) {
            String reason = e.getReason() == null ? e.getMessage() : e.getReason();
            throw new BlockException("Could not open '" + filename + "': " + reason);
        }
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
            int n = channel.read(dst, pos);
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
        long pos = offset;
        while (src.hasRemaining()) {
            pos += channel.write(src, pos);
        }
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        long size = channel.size();
        long end = offset + length;
        // bytes past the end of the file already read as zeros; extend only if asked to reach further
        long writeEnd = Math.min(end, size);
        long pos = offset;
        while (pos < writeEnd) {
            int chunk = (int) Math.min(ZERO_CHUNK, writeEnd - pos);
            write(pos, ZEROS.duplicate().limit(chunk));
            pos += chunk;
        }
        if (end > size) {
            extendTo(end);
        }
    }

    private void extendTo(long newSize) throws IOException {
        if (channel.size() < newSize) {
            // a one-byte write at the end grows the file sparsely
            channel.write(ByteBuffer.wrap(new byte[1]), newSize - 1);
        }
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        // without hole punching the safe discard is to do nothing: contents become "unspecified"
    }

    @Override
    public void flush() throws IOException {
        if (!readOnly) {
            channel.force(true);
        }
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        List<Extent> holes = SparseFiles.status(filename, offset, length);
        if (holes != null && !holes.isEmpty()) {
            return holes;
        }
        return List.of(new Extent(offset, length, Extent.Kind.DATA, 0, offset, filename));
    }

    @Override
    public void truncate(long newLength) throws IOException {
        if (newLength < channel.size()) {
            channel.truncate(newLength);
        } else {
            extendTo(newLength);
        }
    }

    @Override
    public long allocatedFileSize() throws IOException {
        long onDisk = SparseFiles.allocatedBytes(filename);
        if (onDisk >= 0) {
            return onDisk;
        }
        try {
            Object blocks = java.nio.file.Files.getAttribute(Path.of(filename), "unix:blocks");
            // st_blocks counts 512-byte units
            return blocks instanceof Number n ? n.longValue() * 512 : channel.size();
        } catch (UnsupportedOperationException | IllegalArgumentException e) {
            return channel.size();
        }
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
