package dev.strata;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine.Command;

/**
 * A short, representative workload for the JVM's ahead-of-time cache: the launcher runs it once
 * after each build with {@code -XX:AOTCacheOutput}, so every later {@code ./strata} run starts
 * with Strata's classes already loaded and linked (JEP 483/514). Hidden: not a user command.
 */
@Command(name = "aot-train", hidden = true, description = "Training run for the JVM's AOT cache (used by ./strata).")
public final class AotTrainCommand implements Callable<Integer> {
    @Override
    public Integer call() throws IOException {
        Path dir = Files.createTempDirectory("strata-aot");
        try {
            String base = dir.resolve("base.qcow2").toString();
            String top = dir.resolve("top.qcow2").toString();
            String raw = dir.resolve("out.raw").toString();
            String copy = dir.resolve("copy.qcow2").toString();
            String[][] steps = {
                {"img", "create", "-q", "-f", "qcow2", base, "16M"},
                {"img", "bench", "-q", "-w", "-s", "1M", "-c", "16", "-d", "1", "-f", "qcow2", base},
                {"img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top},
                {"img", "bench", "-q", "-w", "-s", "64k", "-c", "32", "-d", "2", "-S", "192k", "-f", "qcow2", top},
                {"img", "bench", "-q", "-s", "1M", "-c", "16", "-d", "1", "-f", "qcow2", top},
                {"img", "info", "--output", "json", "--backing-chain", top},
                {"img", "info", top},
                {"img", "map", "--output", "json", top},
                {"img", "map", top},
                {"img", "check", base},
                {"img", "convert", "-f", "qcow2", "-O", "raw", top, raw},
                {"img", "convert", "-f", "qcow2", "-O", "qcow2", top, copy},
                {"img", "compare", top, raw},
            };
            PrintWriter sink = new PrintWriter(new StringWriter());
            for (String[] step : steps) {
                Main.run(sink, sink, step);
            }
            try {
                dev.strata.demo.DaemonTraining.run(dir, copy);
            } catch (Exception e) {
                throw new IOException("daemon training failed", e);
            }
            return 0;
        } finally {
            try (Stream<Path> files = Files.walk(dir)) {
                for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                    Files.deleteIfExists(p);
                }
            }
        }
    }
}
