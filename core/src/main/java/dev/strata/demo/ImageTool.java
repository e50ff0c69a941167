package dev.strata.demo;

import dev.strata.Main;
import java.io.File;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The image tool the demo checks with: QEMU's own {@code qemu-img} when it is installed (an
 * independent judge of Strata's backups), else Strata's {@code img}, run in-process.
 */
final class ImageTool {
    /** What a run printed and how it ended. */
    record Result(int exitCode, String output) {}

    private final boolean qemu;

    private ImageTool(boolean qemu) {
        this.qemu = qemu;
    }

    static ImageTool find() {
        String path = System.getenv("PATH");
        if (path != null) {
            for (String dir : path.split(File.pathSeparator)) {
                if (new File(dir, "qemu-img").canExecute()) {
                    return new ImageTool(true);
                }
            }
        }
        return new ImageTool(false);
    }

    String name() {
        return qemu ? "qemu-img" : "strata img";
    }

    Result run(String... args) throws IOException {
        if (qemu) {
            List<String> cmd = new ArrayList<>();
            cmd.add("qemu-img");
            cmd.addAll(List.of(args));
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            try {
                if (!p.waitFor(120, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    throw new IOException("qemu-img " + args[0] + " did not finish");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted", e);
            }
            return new Result(p.exitValue(), out.strip());
        }
        StringWriter out = new StringWriter();
        String[] full = new String[args.length + 1];
        full[0] = "img";
        System.arraycopy(args, 0, full, 1, args.length);
        int rc;
        try (PrintWriter w = new PrintWriter(out)) {
            rc = Main.run(w, w, full);
        }
        return new Result(rc, out.toString().strip());
    }

    /** Runs a command that must succeed. */
    String ok(String... args) throws IOException {
        Result r = run(args);
        if (r.exitCode() != 0) {
            throw new DemoQmp.DemoFailure(name() + " " + String.join(" ", args) + " failed: " + r.output());
        }
        return r.output();
    }
}
