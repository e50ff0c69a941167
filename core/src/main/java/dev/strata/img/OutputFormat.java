package dev.strata.img;

/** qemu-img's {@code --output} values. */
final class OutputFormat {
    private OutputFormat() {}

    /** True for json, false for human; anything else is refused in qemu-img's words. */
    static boolean parse(String value) {
        return switch (value) {
            case "json" -> true;
            case "human" -> false;
            default -> throw new IllegalArgumentException("--output must be used with human or json as argument.");
        };
    }
}
