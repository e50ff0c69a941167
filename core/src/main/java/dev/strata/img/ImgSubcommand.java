package dev.strata.img;

import dev.strata.block.BlockException;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.util.concurrent.Callable;
import picocli.CommandLine;

/**
 * The shape every {@code strata img} command shares: output through the command line's writers
 * (so tests can capture it), and failures reported as qemu-img reports them, one line on stderr
 * and the command's own error exit code, never a stack trace.
 *
 * <p>Error lines read {@code strata img: <message>} where qemu-img prints {@code qemu-img:
 * <message>}; the message after the prefix is qemu-img's wording wherever Strata has one.
 */
abstract class ImgSubcommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** What the command does; failures thrown from here become an error line and {@link #errorExitCode()}. */
    abstract int execute() throws Exception;

    /** The exit code for a failure (qemu-img's: 1 for most commands, 2 for compare). */
    int errorExitCode() {
        return 1;
    }

    @Override
    public final Integer call() {
        try {
            return execute();
        } catch (ImgFailure e) {
            for (String line : e.lines()) {
                error(line);
            }
            if (e.hint() != null) {
                // hints are printed as QEMU prints them, trailing newline or not
                err().print(e.hint());
            }
            return e.exitCode() >= 0 ? e.exitCode() : errorExitCode();
        } catch (BlockException | IllegalArgumentException e) {
            error(e.getMessage());
            return errorExitCode();
        } catch (UncheckedIOException e) {
            error(e.getCause().getMessage());
            return errorExitCode();
        } catch (IOException e) {
            error(e.getMessage() == null ? e.toString() : e.getMessage());
            return errorExitCode();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            error("interrupted");
            return errorExitCode();
        } catch (Exception e) {
            error(e.toString());
            return errorExitCode();
        } finally {
            out().flush();
            err().flush();
        }
    }

    PrintWriter out() {
        return spec.commandLine().getOut();
    }

    PrintWriter err() {
        return spec.commandLine().getErr();
    }

    /** What starts the tool's error and warning lines, where qemu-img prints "qemu-img: ". */
    static final String PREFIX = "strata img: ";

    /** One error line, prefixed as qemu-img prefixes its own. */
    void error(String message) {
        err().println(PREFIX + message);
    }
}
