package dev.strata.backup;

import dev.strata.block.BlockNode;
import dev.strata.block.PassThroughFilter;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The driver of a backup's filter node (QEMU's {@code copy-before-write}, the backup's {@code
 * filter-node-name}): every request goes to the source node, so a write through the filter gets
 * the source's copy-before-write and dirty tracking exactly as a guest's write does. The filter
 * holds nothing of its own; Strata's copy-before-write lives on the source, so writes that reach
 * the source another way (an NBD export of it) are saved just the same.
 */
public final class CopyBeforeWriteFilter extends PassThroughFilter {
    private final Map<String, BlockNode> children;

    public CopyBeforeWriteFilter(BlockNode source, BlockNode target) {
        super(source);
        Map<String, BlockNode> c = new LinkedHashMap<>();
        c.put("file", source);
        c.put("target", target);
        this.children = java.util.Collections.unmodifiableMap(c);
    }

    @Override
    public String format() {
        return "copy-before-write";
    }

    @Override
    public Map<String, BlockNode> children() {
        return children;
    }

    @Override
    public void close() {
        // the source and the target belong to the graph and the job
    }
}
