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
 * ({@code inject-error.0.event=write_aio}). The rule engine is {@link Rules}. {@code config} files,
 * {@code align} and the transfer limits are refused: Strata has no use for them yet.
 */
public final class BlkdebugDriver implements BlockDriver {
    /** QAPI's BlkdebugEvent values, sorted. */
    public static final List<String> EVENTS = Rules.EVENTS.stream().sorted().toList();

    private final BlockNode image;
    private final Rules rules;

    private BlkdebugDriver(BlockNode image, Rules rules) {
        this.image = image;
        this.rules = rules;
    }

    public static BlkdebugDriver open(BlockOptions options, OpenContext context) throws IOException {
        Rules rules;
        try {
            rules = Rules.parse(options);
        } catch (IllegalArgumentException e) {
            throw new BlockException(e.getMessage(), BlockException.EINVAL);
        }
        for (String unsupported : List.of(
                "config", "align", "max-transfer", "opt-write-zero", "max-write-zero", "opt-discard", "max-discard")) {
            if (options.get(unsupported) != null) {
                throw new BlockException(
                        "Strata's blkdebug does not support the option '" + unsupported + "'", BlockException.EINVAL);
            }
        }
        options.get("take-child-perms");
        options.get("unshare-child-perms");
        BlockNode image = context.openChild(options, "image", context.flags());
        if (image == null) {
            throw new BlockException("Parameter 'image' is missing", BlockException.EINVAL);
        }
        BlkdebugDriver d = new BlkdebugDriver(image, rules);
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
        rules.check(Rules.IoType.READ, offset, dst.remaining());
        image.read(offset, dst);
    }

    @Override
    public void write(long offset, ByteBuffer src) throws IOException {
        rules.check(Rules.IoType.WRITE, offset, src.remaining());
        image.write(offset, src);
    }

    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        rules.check(Rules.IoType.WRITE_ZEROES, offset, length);
        image.writeZeroes(offset, length, mayUnmap);
    }

    @Override
    public void discard(long offset, long length) throws IOException {
        rules.check(Rules.IoType.DISCARD, offset, length);
        image.discard(offset, length);
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
