package dev.strata.job;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/** A job whose work lasts until the test lets it end (or fail), logging its finalisation steps. */
final class TestJob extends Job {
    final CountDownLatch release = new CountDownLatch(1);
    volatile String failWith;
    final List<String> steps = new CopyOnWriteArrayList<>();

    TestJob(JobRegistry registry, String id, boolean autoFinalize, boolean autoDismiss) {
        super(registry, id, "backup", autoFinalize, autoDismiss);
    }

    @Override
    protected void run() throws JobFailure {
        try {
            while (!release.await(5, TimeUnit.MILLISECONDS)) {
                if (pausePoint()) {
                    return;
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (failWith != null) {
            throw new JobFailure(failWith);
        }
    }

    @Override
    protected void commit() {
        steps.add("commit");
    }

    @Override
    protected void abort() {
        steps.add("abort");
    }

    @Override
    protected void clean() {
        steps.add("clean");
    }
}
