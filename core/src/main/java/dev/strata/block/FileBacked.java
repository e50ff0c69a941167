package dev.strata.block;

/** A driver that is itself a host file (the "file" protocol), so its node's filename is its path. */
public interface FileBacked {
    String filename();
}
