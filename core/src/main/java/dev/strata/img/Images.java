package dev.strata.img;

import dev.strata.block.BlockException;
import dev.strata.block.BlockGraph;
import dev.strata.block.BlockNode;
import dev.strata.block.BlockOptions;
import dev.strata.block.Filenames;
import dev.strata.block.OpenFlags;
import java.io.IOException;
import java.io.PrintWriter;

/**
 * Opens the images named on a {@code strata img} command line as qemu-img opens them: the format
 * given or probed, errors worded "Could not open 'FILE': reason", the warning qemu-img prints
 * when a probed raw image is opened for writing, and the warnings QEMU's drivers print at open
 * (a qcow2 image's bitmaps that a program without bitmap support modified).
 *
 * <p>Nodes opened here are auto-named and so not kept by the graph: the caller closes them.
 */
final class Images {
    private Images() {}

    /**
     * Opens {@code filename}. With {@code openBacking} false, a qcow2 image is opened without its
     * backing chain (as qemu-img info does, so that a missing backing file does not hide the image).
     */
    static BlockNode open(
            BlockGraph graph, String filename, String format, OpenFlags flags, boolean openBacking, PrintWriter err)
            throws ImgFailure {
        String fmt = format;
        try {
            if (fmt != null && !graph.hasDriver(fmt)) {
                throw new ImgFailure("Could not open '" + filename + "': Unknown driver '" + fmt + "'");
            }
            if (fmt == null) {
                fmt = graph.probe(filename);
                if (fmt.equals("raw") && !flags.readOnly()) {
                    err.println(
                            "WARNING: Image format was not specified for '" + filename + "' and probing guessed raw.");
                    err.println("         Automatically detecting the format is dangerous for raw images,"
                            + " write operations on block 0 will be restricted.");
                    err.println("         Specify the 'raw' format explicitly to remove the restrictions.");
                }
            }
            BlockOptions options = graph.imageOptions(filename, fmt)
                    .put("read-only", flags.readOnly())
                    .put("force-share", flags.forceShare());
            if (flags.noFlush()) {
                // qemu-img -t unsafe: flushes do nothing, down to the host file
                options.put("cache", BlockOptions.empty().put("no-flush", true));
            }
            if (!openBacking && supportsBacking(fmt)) {
                options.put("backing", null);
            }
            BlockNode node = graph.add(options, flags.noIo());
            for (String w : node.driver().openWarnings()) {
                err.print(ImgSubcommand.PREFIX + "warning: " + w);
                err.flush();
            }
            return node;
        } catch (IOException e) {
            throw new ImgFailure("Could not open '" + filename + "': " + e.getMessage());
        }
    }

    /**
     * Opens the file node alone ("file" driver, no format above it), with the image lock {@code
     * flags} call for: for commands that work on the bytes of a format themselves (the check).
     */
    static BlockNode openFile(BlockGraph graph, String filename, OpenFlags flags) throws ImgFailure {
        try {
            // a json: name's own file child (its format needs no probe for this)
            BlockOptions protocol = Filenames.isJson(filename)
                    ? Filenames.json(filename)
                            .child("file")
                            .orElseThrow(() ->
                                    new BlockException("Must specify either driver or file", BlockException.EINVAL))
                    : Filenames.protocol(filename);
            return graph.add(protocol.put("read-only", flags.readOnly()).put("force-share", flags.forceShare()));
        } catch (IOException e) {
            throw new ImgFailure("Could not open '" + filename + "': " + e.getMessage());
        }
    }

    /** Formats whose images may name a backing file. */
    static boolean supportsBacking(String format) {
        return format.equals("qcow2");
    }

    /** Closes a node, turning a failure to write back its metadata into a reportable error. */
    static void close(BlockNode node) throws BlockException {
        try {
            node.close();
        } catch (IOException e) {
            throw new BlockException("Failed to close '" + node.filename() + "': " + e.getMessage(), e);
        }
    }
}
