package dev.strata.block.blkdebug;

import dev.strata.block.BlockDriver;
import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.Extent;
import dev.strata.block.OpenContext;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;

/**
 * QEMU's {@code blkdebug}: a filter over its {@code image} child that fails chosen requests, for
 * tests and the demo ("No space left on device" from a backup target, "Input/output error" from a
 * source).
 *
 * <p>Options as QEMU's: {@code inject-error} rules ({@code event}, {@code state}, {@code iotype},
 * {@code errno}, {@code sector}, {@code once}, {@code immediately}) and {@code set-state} rules
 * ({@code event}, {@code state}, {@code new_state}), in the JSON list form or the dotted form
 * ({@code inject-error.0.event=write_aio}), and from a {@code config} file ({@link BlkdebugConfig},
 * its rules first). The rule engine is {@link Rules}. The request limits ({@code align}, {@code
 * max-transfer}, {@code opt-write-zero}, {@code max-write-zero}, {@code opt-discard}, {@code
 * max-discard}) are checked as QEMU checks them and shape each request as QEMU's block layer
 * shapes it before it reaches blkdebug ({@link Limits}), so a rule sees the pieces QEMU's would.
 */
public final class BlkdebugDriver implements BlockDriver {
    /** QAPI's BlkdebugEvent values, sorted. */
    public static final List<String> EVENTS = Rules.EVENTS.stream().sorted().toList();

    private final BlockNode image;
    private final Rules rules;
    private final Limits limits;

    private BlkdebugDriver(BlockNode image, Rules rules, Limits limits) {
        this.image = image;
        this.rules = rules;
        this.limits = limits;
    }

    public static BlkdebugDriver open(BlockOptions options, OpenContext context) throws IOException {
        BlkdebugConfig.Sections config = options.string("config").isPresent()
                ? BlkdebugConfig.read(options.string("config").get())
                : new BlkdebugConfig.Sections(List.of(), List.of());
        Rules rules;
        try {
            rules = Rules.parse(options, config);
        } catch (IllegalArgumentException e) {
            throw new BlockException(e.getMessage(), BlockException.EINVAL);
        }
        Limits limits = Limits.parse(options);
        options.get("take-child-perms");
        options.get("unshare-child-perms");
        BlockNode image = context.openChild(options, "image", context.flags());
        if (image == null) {
            throw new BlockException("Parameter 'image' is missing", BlockException.EINVAL);
        }
        BlkdebugDriver d = new BlkdebugDriver(image, rules, limits);
        d.debugEvent("none");
        return d;
    }

    @Override
    public String format() {
        return "blkdebug";
    }

    @Override
    public long length() throws IOException {
        return image.length();
    }

    @Override
    public void read(long offset, ByteBuffer dst) throws IOException {
        long[] p = limits.padded(offset, dst.remaining(), image.length());
        if (p[0] == offset && p[1] == offset + dst.remaining()) {
            readPieces(offset, dst);
            return;
        }
        // QEMU's block layer reads the aligned range and hands back the part asked for
        ByteBuffer bounce = ByteBuffer.allocate((int) (p[1] - p[0]));
        readPieces(p[0], bounce);
        dst.put(bounce.slice((int) (offset - p[0]), dst.remaining()));
    }

    private void readPieces(long offset, ByteBuffer dst) throws IOException {
        int base = dst.position();
        for (long[] piece : limits.transfers(offset, dst.remaining())) {
            rules.check(Rules.IoType.READ, piece[0], piece[1]);
            image.read(piece[0], dst.slice(base + (int) (piece[0] - offset), (int) piece[1]));
        }
        dst.position(dst.limit());
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        long[] p = limits.padded(offset, src.remaining(), Math.max(image.length(), offset + src.remaining()));
        if (p[0] == offset && p[1] == offset + src.remaining()) {
            writePieces(offset, src);
            return;
        }
        // an unaligned write is read-modify-written over the aligned range, as QEMU's block layer does
        ByteBuffer bounce = ByteBuffer.allocate((int) (p[1] - p[0]));
        long readable = Math.min(p[1], image.length()) - p[0];
        if (readable > 0) {
            readPieces(p[0], bounce.slice(0, (int) readable));
        }
        bounce.put((int) (offset - p[0]), src, src.position(), src.remaining());
        src.position(src.limit());
        writePieces(p[0], bounce.clear());
    }

    private void writePieces(long offset, ByteBuffer src) throws IOException {
        int base = src.position();
        for (long[] piece : limits.transfers(offset, src.remaining())) {
            rules.check(Rules.IoType.WRITE, piece[0], piece[1]);
            image.write(piece[0], src.slice(base + (int) (piece[0] - offset), (int) piece[1]));
        }
        src.position(src.limit());
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        for (long[] piece : limits.zeroWrites(offset, length)) {
            rules.check(Rules.IoType.WRITE_ZEROES, piece[0], piece[1]);
            image.writeZeroes(piece[0], piece[1], mayUnmap);
        }
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        for (long[] piece : limits.discards(offset, length)) {
            rules.check(Rules.IoType.DISCARD, piece[0], piece[1]);
            image.discard(piece[0], piece[1]);
        }
    }

    @Override
    public void flush() throws IOException {
        rules.check(Rules.IoType.FLUSH, 0, 0);
        image.flush();
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        rules.check(Rules.IoType.BLOCK_STATUS, offset, length);
        // the filter has no layer of its own: its child's status is its status
        return image.blockStatus(offset, length);
    }

    @Override
    public void debugEvent(String event) {
        rules.event(event);
    }

    @Override
    public Map<String, BlockNode> children() {
        return Map.of("image", image);
    }

    @Override
    public boolean growable() {
        return image.driver().growable();
    }

    @Override
    public void truncate(long newLength) throws IOException {
        image.truncate(newLength);
    }

    @Override
    public boolean readOnly() {
        return image.readOnly();
    }

    @Override
    public int clusterSize() {
        return image.clusterSize();
    }

    @Override
    public long allocatedFileSize() throws IOException {
        return image.driver().allocatedFileSize();
    }

    @Override
    public void close() {}
}
