package dev.strata.block.blkdebug;

import dev.strata.block.BlockException;
import dev.strata.block.BlockOptions;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * blkdebug's {@code config} file, QEMU's format: sections {@code [inject-error]} and {@code
 * [set-state]}, each followed by {@code key = "value"} lines (the keys of the rule options),
 * comments starting with {@code #}. The rules read come before those given as options.
 */
final class BlkdebugConfig {
    /** The rules of one file. */
    record Sections(List<BlockOptions> injectErrors, List<BlockOptions> setStates) {}

    /** A config file is small text: this bounds what a hostile path can make the driver read. */
    private static final long MAX_BYTES = 1 << 20;

    private BlkdebugConfig() {}

    static Sections read(String filename) throws BlockException {
        String text;
        try {
            Path p = Path.of(filename);
            if (Files.size(p) > MAX_BYTES) {
                throw new BlockException("Could not read blkdebug config file: File too large", BlockException.EINVAL);
            }
            text = Files.readString(p, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new BlockException(
                    "Could not read blkdebug config file: No such file or directory", BlockException.ENOENT);
        } catch (IOException e) {
            throw new BlockException("Could not read blkdebug config file: " + e.getMessage(), BlockException.EIO);
        }
        List<BlockOptions> injects = new ArrayList<>();
        List<BlockOptions> setStates = new ArrayList<>();
        BlockOptions current = null;
        int lineNo = 0;
        for (String raw : text.split("\n", -1)) {
            lineNo++;
            String line = raw.strip();
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            if (line.startsWith("[") && line.endsWith("]")) {
                String section = line.substring(1, line.length() - 1).strip();
                current = BlockOptions.empty();
                switch (section) {
                    case "inject-error" -> injects.add(current);
                    case "set-state" -> setStates.add(current);
                    default -> throw syntax(filename, lineNo, "unknown section [" + section + "]");
                }
                continue;
            }
            int eq = line.indexOf('=');
            if (current == null || eq <= 0) {
                throw syntax(filename, lineNo, "expected a [section] or key = \"value\"");
            }
            String key = line.substring(0, eq).strip();
            String value = line.substring(eq + 1).strip();
            if (value.length() >= 2 && value.startsWith("\"") && value.endsWith("\"")) {
                value = value.substring(1, value.length() - 1);
            }
            current.put(key, value);
        }
        return new Sections(injects, setStates);
    }

    private static BlockException syntax(String filename, int line, String what) {
        return new BlockException(
                "Could not read blkdebug config file: " + filename + ":" + line + ": " + what, BlockException.EINVAL);
    }
}
