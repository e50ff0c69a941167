package dev.strata.qmp;

/** QAPI's error classes (qapi/error.json); almost every error is {@link #GenericError}. */
public enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotActive,
    DeviceNotFound,
    KVMMissingCap
}
