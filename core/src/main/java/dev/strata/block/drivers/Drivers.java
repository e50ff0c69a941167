package dev.strata.block.drivers;

import dev.strata.block.BlockGraph;
import dev.strata.block.blkdebug.BlkdebugDriver;
import dev.strata.block.cbw.CopyBeforeWriteDriver;
import dev.strata.block.cbw.SnapshotAccessDriver;
import dev.strata.block.file.FileDriver;
import dev.strata.block.mem.NullDriver;
import dev.strata.block.nbd.NbdClientDriver;
import dev.strata.block.qcow2.Qcow2Driver;
import dev.strata.block.raw.RawDriver;

/** The drivers Strata ships, registered on a new graph under QEMU's names. */
public final class Drivers {
    private Drivers() {}

    public static BlockGraph newGraph() {
        return new BlockGraph()
                .register("file", FileDriver::open)
                .register("raw", RawDriver::open)
                .register("qcow2", Qcow2Driver::open, Qcow2Driver::probe)
                .register("null-co", NullDriver::open)
                .register("blkdebug", BlkdebugDriver::open)
                .register("copy-before-write", CopyBeforeWriteDriver::open)
                .register("snapshot-access", SnapshotAccessDriver::open)
                .register("nbd", NbdClientDriver::open)
                .registerFileCreator(FileDriver::create);
    }
}
