package dev.strata.demo;

import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Waits for the demo's jobs to end, drawing a progress bar per running job from
 * {@code query-block-jobs}, and returns each job's final event.
 */
final class DemoJobs {
    private static final int BAR = 30;
    private static final Set<String> FINAL_EVENTS = Set.of("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED");

    /** How a job ended: its final event, its error if any, and how long it ran. */
    record Outcome(String job, String event, String error, long len, long millis) {
        /** The outcome {@code job}'s final event {@code e} reports, {@code millis} after the job began. */
        @SuppressWarnings("unchecked")
        static Outcome of(String job, Map<String, Object> e, long millis) {
            Map<String, Object> data = (Map<String, Object>) e.get("data");
            long len = ((Number) data.getOrDefault("len", 0L)).longValue();
            return new Outcome(job, (String) e.get("event"), (String) data.get("error"), len, millis);
        }

        boolean succeeded() {
            return event.equals("BLOCK_JOB_COMPLETED") && error == null;
        }

        double mbPerSecond() {
            return millis == 0 ? 0 : len / 1048576.0 / (millis / 1000.0);
        }
    }

    private final DemoQmp qmp;
    private final PrintStream console;

    DemoJobs(DemoQmp qmp, PrintStream console) {
        this.qmp = qmp;
        this.console = console;
    }

    /** Waits until every job in {@code jobs} has sent its final event; {@code started} is when they began. */
    @SuppressWarnings("unchecked")
    Map<String, Outcome> await(List<String> jobs, long started) throws IOException, InterruptedException {
        Map<String, Outcome> done = new LinkedHashMap<>();
        Map<String, Double> progress = new HashMap<>();
        long deadline = System.nanoTime() + 120_000_000_000L;
        while (done.size() < jobs.size()) {
            for (String job : jobs) {
                if (!done.containsKey(job) && qmp.hasEvent(e -> isFinal(e, job))) {
                    Map<String, Object> e = qmp.awaitEvent(ev -> isFinal(ev, job), 0);
                    done.put(job, Outcome.of(job, e, (System.nanoTime() - started) / 1_000_000));
                }
            }
            if (done.size() == jobs.size()) {
                break;
            }
            if (System.nanoTime() > deadline) {
                throw new DemoQmp.DemoFailure("jobs " + jobs + " did not end within 120 s");
            }
            qmp.quiet(true);
            Object list;
            try {
                list = qmp.ok("query-block-jobs", null);
            } finally {
                qmp.quiet(false);
            }
            for (Object o : (List<Object>) list) {
                Map<String, Object> j = (Map<String, Object>) o;
                long len = ((Number) j.get("len")).longValue();
                long offset = ((Number) j.get("offset")).longValue();
                progress.put((String) j.get("device"), len == 0 ? 1.0 : (double) offset / len);
            }
            drawBars(jobs, progress, done);
            Thread.sleep(50);
        }
        for (String job : jobs) {
            progress.put(job, done.get(job).succeeded() ? 1.0 : progress.getOrDefault(job, 0.0));
        }
        drawBars(jobs, progress, done);
        console.println();
        return done;
    }

    private void drawBars(List<String> jobs, Map<String, Double> progress, Map<String, Outcome> done) {
        List<String> parts = new ArrayList<>();
        for (String job : jobs) {
            double p = Math.min(1.0, progress.getOrDefault(job, 0.0));
            int filled = (int) Math.round(p * BAR);
            String state = done.containsKey(job) ? (done.get(job).succeeded() ? " done" : " FAILED") : "";
            parts.add(String.format(
                    "%s [%s%s] %3d%%%s",
                    job, "#".repeat(filled), ".".repeat(BAR - filled), Math.round(p * 100), state));
        }
        console.print("\r   " + String.join("   ", parts));
        console.flush();
    }

    /** Whether {@code e} is {@code job}'s final event. */
    @SuppressWarnings("unchecked")
    static boolean isFinal(Map<String, Object> e, String job) {
        return FINAL_EVENTS.contains(e.get("event"))
                && e.get("data") instanceof Map<?, ?> d
                && job.equals(((Map<String, Object>) d).get("device"));
    }
}
