package dev.strata.img;

import java.util.List;

/**
 * A command failure whose message lines are ready to print (each gets the error prefix), with an
 * optional hint printed after them without the prefix (as QEMU prints its error hints), and an
 * exit code that, when not -1, overrides the command's default error code.
 */
final class ImgFailure extends Exception {
    private static final long serialVersionUID = 1L;

    private final transient List<String> lines;
    private final int exitCode;
    private String hint;

    ImgFailure(String message) {
        this(-1, message);
    }

    ImgFailure(int exitCode, String... lines) {
        super(String.join("\n", lines));
        this.lines = List.of(lines);
        this.exitCode = exitCode;
    }

    /** Adds a hint, printed exactly as given (QEMU's hints end in a newline or not, case by case). */
    ImgFailure withHint(String text) {
        this.hint = text;
        return this;
    }

    String hint() {
        return hint;
    }

    List<String> lines() {
        return lines;
    }

    int exitCode() {
        return exitCode;
    }
}
