package dev.strata.job;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;

/** Jobs driven through QEMU's life cycle: the status sequences, events and finalisation steps. */
class JobLifecycleTest {
    private final RecordingListener events = new RecordingListener();
    private final JobRegistry jobs = new JobRegistry(events);

    private TestJob job(String id, boolean autoFinalize, boolean autoDismiss, JobTxn txn) throws JobException {
        TestJob j = new TestJob(jobs, id, autoFinalize, autoDismiss);
        jobs.add(j, txn);
        return j;
    }

    private static void await(BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("condition not reached in 10 s");
            }
            Thread.sleep(2);
        }
    }

    @Test
    void successWithAutoFinalizeAndAutoDismiss() throws Exception {
        TestJob j = job("j", true, true, new JobTxn());
        jobs.start(j);
        j.release.countDown();
        await(() -> jobs.find("j") == null);
        assertThat(events.take())
                .containsExactly(
                        "j created", "j running", "j waiting", "j pending", "j COMPLETED", "j concluded", "j null");
        assertThat(j.steps).containsExactly("commit", "clean");
    }

    @Test
    void manualFinalizeAndDismiss() throws Exception {
        TestJob j = job("j", false, false, new JobTxn());
        jobs.start(j);
        j.release.countDown();
        await(() -> j.status() == JobStatus.PENDING);
        assertThatThrownBy(() -> jobs.dismiss(j))
                .hasMessage("Job 'j' in state 'pending' cannot accept command verb 'dismiss'");
        jobs.finalize(j);
        assertThat(j.status()).isEqualTo(JobStatus.CONCLUDED);
        jobs.dismiss(j);
        assertThat(jobs.find("j")).isNull();
        assertThat(events.take())
                .containsExactly(
                        "j created",
                        "j running",
                        "j waiting",
                        "j pending",
                        "j PENDING",
                        "j COMPLETED",
                        "j concluded",
                        "j null");
    }

    @Test
    void failureAborts() throws Exception {
        TestJob j = job("j", true, true, new JobTxn());
        jobs.start(j);
        j.failWith = "Input/output error";
        j.release.countDown();
        await(() -> jobs.find("j") == null);
        assertThat(events.take())
                .containsExactly(
                        "j created",
                        "j running",
                        "j aborting",
                        "j COMPLETED Input/output error",
                        "j concluded",
                        "j null");
        assertThat(j.steps).containsExactly("abort", "clean");
    }

    @Test
    void pauseResumeAndCancelWhilePaused() throws Exception {
        TestJob j = job("j", true, true, new JobTxn());
        jobs.start(j);
        jobs.pause(j);
        await(() -> j.status() == JobStatus.PAUSED);
        assertThatThrownBy(() -> jobs.pause(j)).hasMessage("Job is already paused");
        jobs.resume(j);
        await(() -> j.status() == JobStatus.RUNNING);
        assertThatThrownBy(() -> jobs.resume(j)).hasMessage("Can't resume a job that was not paused");
        jobs.pause(j);
        await(() -> j.status() == JobStatus.PAUSED);
        jobs.cancel(j);
        await(() -> jobs.find("j") == null);
        assertThat(events.take())
                .containsExactly(
                        "j created",
                        "j running",
                        "j paused",
                        "j running",
                        "j paused",
                        "j running",
                        "j aborting",
                        "j CANCELLED",
                        "j concluded",
                        "j null");
        assertThat(j.steps).containsExactly("abort", "clean");
        assertThat(j.error()).isEqualTo("Operation canceled");
    }

    @Test
    void cancelBeforeStartReportsNoCompletion() throws Exception {
        TestJob j = job("j", true, true, new JobTxn());
        jobs.cancelSync(j);
        assertThat(events.take()).containsExactly("j created", "j aborting", "j concluded", "j null");
        assertThat(j.steps).containsExactly("abort", "clean");
    }

    @Test
    void groupedJobsWaitForEachOther() throws Exception {
        JobTxn txn = new JobTxn();
        TestJob a = job("a", true, true, txn);
        TestJob b = job("b", true, true, txn);
        jobs.start(a);
        jobs.start(b);
        a.release.countDown();
        await(() -> a.status() == JobStatus.WAITING);
        Thread.sleep(20);
        assertThat(a.status()).isEqualTo(JobStatus.WAITING);
        b.release.countDown();
        await(() -> jobs.jobs().isEmpty());
        List<String> e = events.take();
        assertThat(e.subList(e.indexOf("b waiting"), e.size()))
                .containsExactly(
                        "b waiting",
                        "b pending",
                        "a pending",
                        "b COMPLETED",
                        "b concluded",
                        "b null",
                        "a COMPLETED",
                        "a concluded",
                        "a null");
    }

    @Test
    void groupedFailureCancelsTheOthersEvenWhenWaiting() throws Exception {
        JobTxn txn = new JobTxn();
        TestJob a = job("a", true, true, txn);
        TestJob b = job("b", true, true, txn);
        TestJob c = job("c", true, true, txn);
        jobs.start(a);
        jobs.start(b);
        jobs.start(c);
        a.release.countDown();
        await(() -> a.status() == JobStatus.WAITING);
        b.failWith = "Input/output error";
        b.release.countDown();
        await(() -> jobs.jobs().isEmpty());
        List<String> e = events.take();
        assertThat(e).contains("a CANCELLED", "b COMPLETED Input/output error", "c CANCELLED");
        assertThat(e).doesNotContain("a pending", "c waiting");
        assertThat(a.steps).containsExactly("abort", "clean");
        assertThat(b.steps).containsExactly("abort", "clean");
        assertThat(c.steps).containsExactly("abort", "clean");
    }

    @Test
    void everyVerbInEveryReachableStateFollowsTheTable() throws Exception {
        List<String> mismatches = new ArrayList<>();
        for (JobStatus state : List.of(
                JobStatus.CREATED,
                JobStatus.RUNNING,
                JobStatus.PAUSED,
                JobStatus.WAITING,
                JobStatus.PENDING,
                JobStatus.CONCLUDED)) {
            for (JobVerb verb : List.of(
                    JobVerb.CANCEL,
                    JobVerb.PAUSE,
                    JobVerb.RESUME,
                    JobVerb.SET_SPEED,
                    JobVerb.FINALIZE,
                    JobVerb.DISMISS)) {
                TestJob j = reach(state, state + "-" + verb.qapiName());
                String refusal = null;
                try {
                    switch (verb) {
                        case CANCEL -> jobs.cancel(j);
                        case PAUSE -> jobs.pause(j);
                        case RESUME -> jobs.resume(j);
                        case SET_SPEED -> jobs.setSpeed(j, 1);
                        case FINALIZE -> jobs.finalize(j);
                        case DISMISS -> jobs.dismiss(j);
                        default -> throw new AssertionError(verb);
                    }
                } catch (JobException e) {
                    refusal = e.getMessage();
                }
                boolean verbRefused = refusal != null && refusal.contains("cannot accept command verb");
                // QEMU checks "was it paused?" before the verb table, so that refusal says nothing here
                boolean uninformative = refusal != null && refusal.startsWith("Can't resume");
                if (!uninformative && verbRefused == verb.allowedIn(state)) {
                    mismatches.add(verb.qapiName() + " in " + state.qapiName() + ": " + refusal);
                }
                for (Job other : jobs.jobs()) {
                    jobs.cancelSync(other);
                }
                for (Job other : jobs.jobs()) {
                    if (other.status() == JobStatus.CONCLUDED) {
                        jobs.dismiss(other);
                    }
                }
                if (j.userPaused()) {
                    continue;
                }
                j.release.countDown();
            }
        }
        assertThat(mismatches).isEmpty();
    }

    /** A job (with a partner for "waiting") brought to {@code state}. */
    private TestJob reach(JobStatus state, String id) throws Exception {
        JobTxn txn = new JobTxn();
        TestJob j = job(
                id.replace('_', '-').toLowerCase(java.util.Locale.ROOT),
                state != JobStatus.PENDING,
                state != JobStatus.CONCLUDED,
                txn);
        if (state == JobStatus.CREATED) {
            return j;
        }
        TestJob partner = null;
        if (state == JobStatus.WAITING) {
            partner = job(j.id() + "-partner", true, true, txn);
            jobs.start(partner);
        }
        jobs.start(j);
        switch (state) {
            case RUNNING -> {}
            case PAUSED -> {
                jobs.pause(j);
                await(() -> j.status() == JobStatus.PAUSED);
            }
            case WAITING, PENDING, CONCLUDED -> {
                j.release.countDown();
                await(() -> j.status() == state);
            }
            default -> throw new AssertionError(state);
        }
        assertThat(j.status()).isEqualTo(state);
        return j;
    }
}
