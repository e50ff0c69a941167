package dev.strata.block.dirty;

import dev.strata.bitmap.HBitmap;

/**
 * A dirty bitmap as an image stores it (QEMU's persistent bitmaps): what a driver loads at open
 * and is handed back to store at close.
 *
 * @param name the bitmap's name, unique in the image
 * @param granularity bytes per bit, a power of two
 * @param auto whether the bitmap records writes (the qcow2 "auto" flag; QMP's enabled)
 * @param inconsistent whether a program that had the image open did not store it (the qcow2
 *     "in_use" flag found at open): its bits are unknown and {@code bits} is empty
 * @param bits one bit per {@code granularity} bytes of the disk
 */
public record StoredBitmap(String name, long granularity, boolean auto, boolean inconsistent, HBitmap bits) {}
