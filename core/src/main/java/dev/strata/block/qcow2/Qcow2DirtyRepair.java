package dev.strata.block.qcow2;

import dev.strata.block.BlockException;
import dev.strata.block.BlockNode;
import java.util.List;

/**
 * Repairs a qcow2 image whose dirty bit is set before the engine opens it read-write: QEMU's
 * automatic {@code check -r all} in qcow2_do_open.
 *
 * <p>The repair runs through the node's own file node, which holds the image lock, so nothing
 * else can write the file meanwhile; the engine must read nothing it keeps (header, L1 or refcount
 * table) until this returns. Stricter than QEMU, which opens the image even when
 * corruptions remain (it only fails on check errors): Strata refuses then, because its allocator
 * would trust refcounts the check just called wrong.
 */
final class Qcow2DirtyRepair {
    /** Diagnostic lines quoted in the refusal; the full list is what {@code strata-img check} prints. */
    private static final int MAX_QUOTED_LINES = 5;

    private Qcow2DirtyRepair() {}

    /** Repairs the image in {@code fileNode}'s file, or throws why the image cannot be opened read-write. */
    static void repair(BlockNode fileNode) throws BlockException {
        String filename = fileNode.filename();
        Qcow2CheckResult r = Qcow2Check.run(
                fileNode.driver(), filename, Qcow2Check.RepairMode.ALL, Qcow2Check.defaultMemoryBudget());
        if (r.completed() && r.checkErrors() == 0 && r.corruptions() == 0) {
            return;
        }
        StringBuilder why = new StringBuilder("Could not repair dirty image '")
                .append(filename)
                .append("': ");
        if (!r.completed()) {
            why.append(r.failure());
        } else {
            why.append(r.corruptions())
                    .append(" corruptions and ")
                    .append(r.checkErrors())
                    .append(" check errors remain after repair (")
                    .append(r.corruptionsFixed())
                    .append(" corruptions and ")
                    .append(r.leaksFixed())
                    .append(" leaks were fixed)");
        }
        List<String> lines = r.diagnostics("check");
        if (!lines.isEmpty()) {
            why.append("; check reported: ")
                    .append(String.join("; ", lines.subList(0, Math.min(lines.size(), MAX_QUOTED_LINES))));
            if (lines.size() > MAX_QUOTED_LINES) {
                why.append("; ... (").append(lines.size() - MAX_QUOTED_LINES).append(" more lines)");
            }
        }
        throw new BlockException(why.toString(), r.completed() ? BlockException.EIO : errnoOf(r));
    }

    private static int errnoOf(Qcow2CheckResult r) {
        String failure = r.failure() == null ? "" : r.failure();
        return failure.contains("Permission denied") ? BlockException.EPERM : BlockException.EIO;
    }
}
