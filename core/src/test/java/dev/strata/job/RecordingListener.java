package dev.strata.job;

import java.util.ArrayList;
import java.util.List;

/** Keeps what jobs report as short strings ("drive0 running", "drive0 COMPLETED"). */
final class RecordingListener implements JobListener {
    private final List<String> events = new ArrayList<>();

    @Override
    public synchronized void statusChanged(Job job) {
        events.add(job.id() + " " + job.status().qapiName());
    }

    @Override
    public synchronized void pending(Job job) {
        events.add(job.id() + " PENDING");
    }

    @Override
    public synchronized void finished(Job job) {
        events.add(job.id()
                + (job.isCancelled() ? " CANCELLED" : " COMPLETED" + (job.error() == null ? "" : " " + job.error())));
    }

    @Override
    public synchronized void ioError(Job job, boolean read, ErrorAction action) {
        events.add(job.id() + " ERROR " + (read ? "read " : "write ") + action);
    }

    synchronized List<String> take() {
        List<String> out = List.copyOf(events);
        events.clear();
        return out;
    }
}
