package dev.strata.img;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.strata.Main;
import dev.strata.testing.Interop;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * Runs {@code strata img} in-process and the real qemu-img side by side for differential tests,
 * and puts their outputs in a comparable form: the error prefix ("strata img: " against
 * "qemu-img: ") is the one difference of wording Strata makes on purpose.
 */
final class ImgTool {
    private static final ObjectMapper JSON = new ObjectMapper();

    private ImgTool() {}

    /** What one run printed and returned. */
    record Run(int exit, String out, String err) {
        Run assertOk() {
            if (exit != 0) {
                throw new AssertionError("exit " + exit + "\nstdout: " + out + "\nstderr: " + err);
            }
            return this;
        }

        /** Stderr with the tool's own prefix replaced, so both tools' messages compare equal. */
        String errNormalized() {
            return err.replace("strata img: ", "TOOL: ").replace("qemu-img: ", "TOOL: ");
        }
    }

    static Run strata(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        List<String> all = new ArrayList<>();
        all.add("img");
        all.addAll(List.of(args));
        int exit;
        try (PrintWriter o = new PrintWriter(out);
                PrintWriter e = new PrintWriter(err)) {
            exit = Main.run(o, e, all.toArray(String[]::new));
        }
        return new Run(exit, out.toString(), err.toString());
    }

    static Run qemu(String... args) throws IOException, InterruptedException {
        Interop.Result r = Interop.qemuImg(args);
        return new Run(r.exitCode(), r.stdout(), r.stderr());
    }

    static JsonNode json(String text) throws IOException {
        return JSON.readTree(text);
    }

    /** The object's field names in the order they were printed. */
    static List<String> keys(JsonNode object) {
        List<String> out = new ArrayList<>();
        for (Iterator<String> it = object.fieldNames(); it.hasNext(); ) {
            out.add(it.next());
        }
        return out;
    }

    /**
     * Every bitmap qemu-img info lists in {@code info} (of {@code mine}) reads the same to QEMU
     * (qemu-nbd, nbdinfo) from {@code mine} as from {@code theirs}.
     */
    static void assertBitmapsReadAlike(String info, Path mine, Path theirs, String what) throws Exception {
        for (String line : info.split("\n")) {
            if (line.strip().startsWith("name: ")) {
                String bitmap = line.strip().substring("name: ".length());
                assertThat(Interop.qemuBitmapMap(mine, bitmap))
                        .as("QEMU's reading of %s after %s", bitmap, what)
                        .isEqualTo(Interop.qemuBitmapMap(theirs, bitmap));
            }
        }
    }
}
