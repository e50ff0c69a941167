package dev.strata.qmp;

/** A command's refusal, sent as {@code {"error": {"class": ..., "desc": ...}}}; desc is QEMU's text. */
public final class QmpException extends Exception {
    private static final long serialVersionUID = 1L;

    private final ErrorClass errorClass;

    public QmpException(ErrorClass errorClass, String desc) {
        super(desc, null, false, false);
        this.errorClass = errorClass;
    }

    /** A {@link ErrorClass#GenericError}, the class of nearly every QMP error. */
    public QmpException(String desc) {
        this(ErrorClass.GenericError, desc);
    }

    public ErrorClass errorClass() {
        return errorClass;
    }

    public String desc() {
        return getMessage();
    }
}
