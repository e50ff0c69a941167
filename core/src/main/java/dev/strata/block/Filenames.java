package dev.strata.block;

import dev.strata.json.Json;
import java.util.Map;
import java.util.Set;

/**
 * How QEMU reads a filename given where a node is opened by name (qemu-img's arguments, {@code
 * --drive file=}, drive-backup's target, a backing file): a {@code json:{...}} pseudo-protocol
 * filename is the whole node's options; a protocol prefix of a driver Strata has selects that
 * driver ({@code blkdebug:CONFIG:IMAGE}, {@code null-co://}, QEMU's NBD forms); anything else is a
 * host file.
 */
public final class Filenames {
    private static final String JSON = "json:";
    private static final String BLKDEBUG = "blkdebug:";
    /** Protocols QEMU has and Strata does not: refused as a QEMU built without them refuses them. */
    private static final Set<String> FOREIGN = Set.of(
            "nbd",
            "nbd+unix",
            "nbd+tcp",
            "http",
            "https",
            "ftp",
            "ftps",
            "ssh",
            "iscsi",
            "iser",
            "rbd",
            "gluster",
            "nfs",
            "vvfat");

    private Filenames() {}

    public static boolean isJson(String filename) {
        return filename.startsWith(JSON);
    }

    /** The options a {@code json:} filename gives, nested. */
    public static BlockOptions json(String filename) throws BlockException {
        Object value;
        try {
            value = Json.parse(filename.substring(JSON.length()));
        } catch (IllegalArgumentException e) {
            throw new BlockException("Could not parse the JSON options: " + e.getMessage(), BlockException.EINVAL);
        }
        if (!(value instanceof Map<?, ?> map)) {
            throw new BlockException("Invalid JSON object given", BlockException.EINVAL);
        }
        try {
            @SuppressWarnings("unchecked")
            Map<String, ?> object = (Map<String, ?>) map;
            return BlockOptions.fromJsonObject(object);
        } catch (IllegalArgumentException e) {
            throw new BlockException(e.getMessage(), BlockException.EINVAL);
        }
    }

    /**
     * The options of the protocol node a filename that is not {@code json:} names: blkdebug or
     * null-co by their prefixes, else a host file.
     */
    public static BlockOptions protocol(String filename) throws BlockException {
        if (filename.startsWith(BLKDEBUG)) {
            String rest = filename.substring(BLKDEBUG.length());
            int colon = rest.indexOf(':');
            if (colon < 0) {
                throw new BlockException("Invalid filename: " + filename, BlockException.EINVAL);
            }
            BlockOptions o = BlockOptions.empty().put("driver", "blkdebug");
            if (colon > 0) {
                o.put("config", rest.substring(0, colon));
            }
            String image = rest.substring(colon + 1);
            return o.put("image", isJson(image) ? json(image) : protocol(image));
        }
        if (filename.startsWith("nbd:") || filename.startsWith("nbd+unix:") || filename.startsWith("nbd+tcp:")) {
            return nbd(filename);
        }
        if (filename.startsWith("null-co://")) {
            return BlockOptions.empty().put("driver", "null-co");
        }
        String protocol = protocolName(filename);
        if (protocol != null && FOREIGN.contains(protocol)) {
            throw new BlockException("Unknown protocol '" + protocol + "'", BlockException.ENOENT);
        }
        return BlockOptions.empty().put("driver", "file").put("filename", filename);
    }

    /**
     * QEMU's NBD filenames: {@code nbd:unix:PATH[:exportname=NAME]}, {@code
     * nbd:HOST:PORT[:exportname=NAME]}, {@code nbd[+tcp]://HOST[:PORT]/NAME} and {@code
     * nbd+unix:///NAME?socket=PATH}.
     */
    private static BlockOptions nbd(String filename) throws BlockException {
        BlockOptions o = BlockOptions.empty().put("driver", "nbd");
        String export = "";
        BlockOptions server = BlockOptions.empty();
        if (filename.startsWith("nbd+unix://")) {
            String rest = filename.substring("nbd+unix://".length());
            int q = rest.indexOf("?socket=");
            if (!rest.startsWith("/") || q < 0) {
                throw new BlockException("Invalid NBD URI: " + filename, BlockException.EINVAL);
            }
            export = rest.substring(1, q);
            server.put("type", "unix").put("path", rest.substring(q + "?socket=".length()));
        } else if (filename.startsWith("nbd://") || filename.startsWith("nbd+tcp://")) {
            String rest = filename.substring(filename.indexOf("://") + 3);
            int slash = rest.indexOf('/');
            String hostPort = slash < 0 ? rest : rest.substring(0, slash);
            export = slash < 0 ? "" : rest.substring(slash + 1);
            int colon = hostPort.lastIndexOf(':');
            server.put("type", "inet")
                    .put("host", colon < 0 ? hostPort : hostPort.substring(0, colon))
                    .put("port", colon < 0 ? "10809" : hostPort.substring(colon + 1));
        } else {
            String rest = filename.substring("nbd:".length());
            int name = rest.indexOf(":exportname=");
            if (name >= 0) {
                export = rest.substring(name + ":exportname=".length());
                rest = rest.substring(0, name);
            }
            if (rest.startsWith("unix:")) {
                server.put("type", "unix").put("path", rest.substring("unix:".length()));
            } else {
                int colon = rest.lastIndexOf(':');
                if (colon < 0) {
                    throw new BlockException("Invalid NBD filename: " + filename, BlockException.EINVAL);
                }
                server.put("type", "inet").put("host", rest.substring(0, colon)).put("port", rest.substring(colon + 1));
            }
        }
        return o.put("server", server).put("export", export);
    }

    /** QEMU's protocol part of a name ("nbd" of "nbd:unix:/s", "nbd+unix" of "nbd+unix:///x"), or null. */
    private static String protocolName(String filename) {
        int colon = filename.indexOf(':');
        int slash = filename.indexOf('/');
        if (colon <= 0 || (slash >= 0 && slash < colon)) {
            return null;
        }
        return filename.substring(0, colon);
    }
}
