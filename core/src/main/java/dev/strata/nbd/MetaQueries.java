package dev.strata.nbd;

import java.util.ArrayList;
import java.util.List;

/**
 * Which of an export's metadata contexts a SET_META_CONTEXT or LIST_META_CONTEXT query names.
 *
 * <p>SET selects exact names only. LIST also takes the namespace queries QEMU documents
 * ({@code base:}, {@code qemu:}, {@code qemu:dirty-bitmap:}) and, with no query at all, lists
 * everything. Unknown queries match nothing and are not an error. The result keeps the export's
 * order, each context once, whatever the order and repetition of the queries.
 */
final class MetaQueries {
    private MetaQueries() {}

    static List<MetaContext> match(List<MetaContext> offered, List<String> queries, boolean listing) {
        if (listing && queries.isEmpty()) {
            return offered;
        }
        List<MetaContext> out = new ArrayList<>();
        for (MetaContext c : offered) {
            for (String q : queries) {
                if (matches(c.name(), q, listing)) {
                    out.add(c);
                    break;
                }
            }
        }
        return out;
    }

    private static boolean matches(String context, String query, boolean listing) {
        if (context.equals(query)) {
            return true;
        }
        if (!listing) {
            return false;
        }
        return switch (query) {
            case "base:" -> context.startsWith("base:");
            case "qemu:" -> context.startsWith("qemu:");
            case MetaContext.DIRTY_BITMAP_PREFIX -> context.startsWith(MetaContext.DIRTY_BITMAP_PREFIX);
            default -> false;
        };
    }
}
