package dev.strata.demo;

import dev.strata.Main;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code strata demo}: the seed's whole story on scratch images, every backup verified. */
@Command(
        name = "demo",
        mixinStandardHelpOptions = true,
        description = {
            "Run the story of QEMU's \"Dirty Bitmaps and Incremental Backup\" against a Strata daemon on",
            "scratch images: bitmaps, a full backup, incremental backups, a failing target and its retry,",
            "and a grouped transaction. Shows the QMP exchanged, checks every backup against the disk at",
            "the backup's start, and exits 0 only if every check held."
        })
public final class DemoCommand implements Callable<Integer> {
    @Option(
            names = "--dir",
            paramLabel = "DIR",
            description = "work in DIR and keep the images there (default: a scratch directory, removed afterwards)")
    Path dir;

    @Override
    public Integer call() throws Exception {
        boolean scratch = dir == null;
        Path work = scratch ? Files.createTempDirectory("strata-demo-") : Files.createDirectories(dir);
        long start = System.nanoTime();
        boolean held;
        try {
            held = new Demo(work, System.out).run(Main.version());
        } catch (DemoQmp.DemoFailure e) {
            System.out.println();
            System.out.println("demo stopped: " + e.getMessage());
            held = false;
        } finally {
            if (scratch) {
                deleteTree(work);
            }
        }
        System.out.printf(
                "Finished in %.1f s%s%n", (System.nanoTime() - start) / 1e9, scratch ? "" : "; images in " + work);
        return held ? 0 : 1;
    }

    private static void deleteTree(Path root) throws IOException {
        try (Stream<Path> s = Files.walk(root)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }
}
