package dev.strata.txn;

import dev.strata.block.BlockNode;
import dev.strata.block.IoGate;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs actions all or nothing (QEMU's qmp_transaction): every action is prepared in order; the
 * first failure aborts the prepared ones in reverse and is the transaction's error; otherwise all
 * commit. Then every prepared action is cleaned.
 *
 * <p>Invariant 2 (docs/architecture.md): the nodes given are drained for the whole of it, so no
 * guest write lands between two actions. "bitmap-add + full backup" therefore yields a bitmap that
 * starts exactly at the backup's point in time. Backup jobs start in their commit and their threads
 * begin copying only after the drain ends.
 */
public final class Transaction {
    private Transaction() {}

    public static void run(List<Action> actions, List<BlockNode> drain) throws TransactionException {
        List<IoGate.Drained> held = new ArrayList<>(drain.size());
        List<Action> prepared = new ArrayList<>(actions.size());
        try {
            for (BlockNode n : drain) {
                held.add(n.drain());
            }
            try {
                for (Action a : actions) {
                    a.prepare();
                    prepared.add(a);
                }
            } catch (TransactionException | RuntimeException e) {
                for (Action a : prepared.reversed()) {
                    a.abort();
                }
                throw e;
            }
            for (Action a : prepared) {
                a.commit();
            }
        } finally {
            for (Action a : prepared) {
                a.clean();
            }
            for (IoGate.Drained d : held.reversed()) {
                d.close();
            }
        }
    }
}
