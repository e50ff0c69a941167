package dev.strata.block.qcow2;

/**
 * The counters one check pass accumulates (QEMU's BdrvCheckResult): problems found and fixed, the
 * image end offset and the allocation statistics of the active L1 table.
 *
 * <p>Mutable on purpose: the check mirrors QEMU's flow, which saves, restores and adds these
 * counters around its repair steps, and the reported numbers depend on exactly that.
 */
final class Qcow2CheckTally {
    long corruptions;
    long leaks;
    long checkErrors;
    long corruptionsFixed;
    long leaksFixed;
    long imageEndOffset;
    long totalClusters;
    long allocatedClusters;
    long fragmentedClusters;
    long compressedClusters;

    Qcow2CheckTally copy() {
        Qcow2CheckTally t = new Qcow2CheckTally();
        t.corruptions = corruptions;
        t.leaks = leaks;
        t.checkErrors = checkErrors;
        t.corruptionsFixed = corruptionsFixed;
        t.leaksFixed = leaksFixed;
        t.imageEndOffset = imageEndOffset;
        t.totalClusters = totalClusters;
        t.allocatedClusters = allocatedClusters;
        t.fragmentedClusters = fragmentedClusters;
        t.compressedClusters = compressedClusters;
        return t;
    }

    void restore(Qcow2CheckTally t) {
        corruptions = t.corruptions;
        leaks = t.leaks;
        checkErrors = t.checkErrors;
        corruptionsFixed = t.corruptionsFixed;
        leaksFixed = t.leaksFixed;
        imageEndOffset = t.imageEndOffset;
        totalClusters = t.totalClusters;
        allocatedClusters = t.allocatedClusters;
        fragmentedClusters = t.fragmentedClusters;
        compressedClusters = t.compressedClusters;
    }

    /** Adds {@code src}'s problem counters; with {@code allocationInfo} also takes its statistics. */
    void add(Qcow2CheckTally src, boolean allocationInfo) {
        corruptions += src.corruptions;
        leaks += src.leaks;
        checkErrors += src.checkErrors;
        corruptionsFixed += src.corruptionsFixed;
        leaksFixed += src.leaksFixed;
        if (allocationInfo) {
            imageEndOffset = src.imageEndOffset;
            totalClusters = src.totalClusters;
            allocatedClusters = src.allocatedClusters;
            fragmentedClusters = src.fragmentedClusters;
            compressedClusters = src.compressedClusters;
        }
    }
}
