package dev.strata.block;

/**
 * A drive: a named front end over a root node, QEMU's {@code -drive id=drive0,...} (a
 * BlockBackend with a name). Every command that takes "a device or a node-name" accepts the id.
 */
public record Drive(String id, BlockNode root) {}
