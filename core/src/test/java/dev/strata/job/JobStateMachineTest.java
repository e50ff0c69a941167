package dev.strata.job;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The job state machine against QEMU's tables (transcribed here independently from job.c's JobSTT
 * and JobVerbTable, as the reference digest prints them), and jobs driven through every state a
 * backup reaches, with every verb tried in each against the verb table.
 */
class JobStateMachineTest {
    /** Allowed transitions, as QEMU's table: from-state -> to-states. */
    private static final Map<JobStatus, List<JobStatus>> TRANSITIONS = Map.ofEntries(
            Map.entry(JobStatus.UNDEFINED, List.of(JobStatus.CREATED)),
            Map.entry(JobStatus.CREATED, List.of(JobStatus.RUNNING, JobStatus.ABORTING, JobStatus.NULL)),
            Map.entry(
                    JobStatus.RUNNING,
                    List.of(JobStatus.PAUSED, JobStatus.READY, JobStatus.WAITING, JobStatus.ABORTING)),
            Map.entry(JobStatus.PAUSED, List.of(JobStatus.RUNNING)),
            Map.entry(JobStatus.READY, List.of(JobStatus.STANDBY, JobStatus.WAITING, JobStatus.ABORTING)),
            Map.entry(JobStatus.STANDBY, List.of(JobStatus.READY)),
            Map.entry(JobStatus.WAITING, List.of(JobStatus.PENDING, JobStatus.ABORTING)),
            Map.entry(JobStatus.PENDING, List.of(JobStatus.ABORTING, JobStatus.CONCLUDED)),
            Map.entry(JobStatus.ABORTING, List.of(JobStatus.ABORTING, JobStatus.CONCLUDED)),
            Map.entry(JobStatus.CONCLUDED, List.of(JobStatus.NULL)),
            Map.entry(JobStatus.NULL, List.of()));

    /** Verbs each state accepts, as QEMU's verb table. */
    private static final Map<JobVerb, List<JobStatus>> VERBS = Map.of(
            JobVerb.CANCEL,
            List.of(
                    JobStatus.CREATED,
                    JobStatus.RUNNING,
                    JobStatus.PAUSED,
                    JobStatus.READY,
                    JobStatus.STANDBY,
                    JobStatus.WAITING,
                    JobStatus.PENDING),
            JobVerb.PAUSE,
            List.of(JobStatus.CREATED, JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.READY, JobStatus.STANDBY),
            JobVerb.RESUME,
            List.of(JobStatus.CREATED, JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.READY, JobStatus.STANDBY),
            JobVerb.SET_SPEED,
            List.of(JobStatus.CREATED, JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.READY, JobStatus.STANDBY),
            JobVerb.COMPLETE,
            List.of(JobStatus.READY, JobStatus.STANDBY),
            JobVerb.FINALIZE,
            List.of(JobStatus.PENDING),
            JobVerb.DISMISS,
            List.of(JobStatus.CONCLUDED),
            JobVerb.CHANGE,
            List.of(JobStatus.CREATED, JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.READY, JobStatus.STANDBY));

    @Test
    void everyTransitionMatchesQemusTable() {
        for (JobStatus from : JobStatus.values()) {
            for (JobStatus to : JobStatus.values()) {
                assertThat(from.canBecome(to))
                        .as("%s -> %s", from.qapiName(), to.qapiName())
                        .isEqualTo(TRANSITIONS.get(from).contains(to));
            }
        }
    }

    @Test
    void everyVerbMatchesQemusTable() {
        for (JobVerb verb : JobVerb.values()) {
            for (JobStatus state : JobStatus.values()) {
                assertThat(verb.allowedIn(state))
                        .as("%s in %s", verb.qapiName(), state.qapiName())
                        .isEqualTo(VERBS.get(verb).contains(state));
            }
        }
    }

    @Test
    void qapiNames() {
        assertThat(JobVerb.SET_SPEED.qapiName()).isEqualTo("set-speed");
        assertThat(JobStatus.NULL.qapiName()).isEqualTo("null");
    }

    @Test
    void refusalNamesStateAndVerb() {
        JobRegistry jobs = new JobRegistry(JobListener.NONE);
        TestJob j = new TestJob(jobs, "drive0", true, false);
        assertThatThrownBy(() -> {
                    jobs.add(j, new JobTxn());
                    jobs.dismiss(j);
                })
                .hasMessage("Job 'drive0' in state 'created' cannot accept command verb 'dismiss'");
    }

    @Test
    void jobIdsAsQemu() throws Exception {
        JobRegistry jobs = new JobRegistry(JobListener.NONE);
        for (String bad : List.of("", "0a", "a b", "-x", "a/b", "é")) {
            assertThatThrownBy(() -> jobs.checkId(bad)).hasMessage("Invalid job ID '" + bad + "'");
        }
        jobs.add(new TestJob(jobs, "a-1.b_c", true, true), new JobTxn());
        assertThatThrownBy(() -> jobs.checkId("a-1.b_c")).hasMessage("Job ID 'a-1.b_c' already in use");
    }
}
