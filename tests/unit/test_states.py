"""The transition table derived from the stages: the happy path is legal, everything else raises."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.states import TERMINAL_STATES, IllegalTransition, JobState
from orchestrator.workflow.journey import PIPELINE

TABLE = PIPELINE.transitions
check_transition = TABLE.move

HAPPY_PATH = [
    JobState.QUEUED,
    JobState.PROJECT_CREATED,
    JobState.UPLOADING,
    JobState.UPLOADED,
    JobState.EDIT_REQUESTED,
    JobState.EDITING,
    JobState.EDITED,
    JobState.DOWNLOADING_EDITS,
    JobState.EXPORT_REQUESTED,
    JobState.EXPORTING,
    JobState.EXPORTED,
    JobState.DOWNLOADING_EXPORTS,
    JobState.TAGGING,
    JobState.REVIEWING,
    JobState.DELIVERING,
    JobState.COMPLETED,
]


def test_happy_path_is_legal() -> None:
    for current, new in itertools.pairwise(HAPPY_PATH):
        check_transition(current, new)


@pytest.mark.parametrize(
    "skip_to", [JobState.COMPLETED, JobState.TAGGING, JobState.REVIEWING, JobState.DELIVERING]
)
def test_stages_not_asked_for_can_be_skipped(skip_to: JobState) -> None:
    check_transition(JobState.DOWNLOADING_EDITS, skip_to)
    check_transition(JobState.DOWNLOADING_EXPORTS, skip_to)


def test_reviewing_is_a_waiting_state() -> None:
    assert JobState.REVIEWING in PIPELINE.waiting_states


def test_no_state_moves_backwards_or_jumps_ahead() -> None:
    for current, new in itertools.product(HAPPY_PATH, HAPPY_PATH):
        if HAPPY_PATH.index(new) <= HAPPY_PATH.index(current):
            with pytest.raises(IllegalTransition):
                check_transition(current, new)
    with pytest.raises(IllegalTransition):
        check_transition(JobState.UPLOADING, JobState.EDIT_REQUESTED)  # edit before upload
    with pytest.raises(IllegalTransition):
        check_transition(JobState.QUEUED, JobState.UPLOADING)
    with pytest.raises(IllegalTransition):  # into the export's download without the export
        check_transition(JobState.DOWNLOADING_EDITS, JobState.EXPORTED)
    with pytest.raises(IllegalTransition):  # out of the export without its download
        check_transition(JobState.EXPORTING, JobState.TAGGING)


def test_terminal_states_are_final_except_failed() -> None:
    assert TABLE.allowed(JobState.COMPLETED) == frozenset()
    assert TABLE.allowed(JobState.CANCELLED) == frozenset()
    for state in JobState:
        if state not in TERMINAL_STATES:
            check_transition(state, JobState.FAILED)
            check_transition(state, JobState.CANCELLED)
    check_transition(JobState.FAILED, JobState.UPLOADING)  # `retry` goes back


def test_every_live_state_has_a_stage_with_a_step() -> None:
    for state in TABLE.states - TERMINAL_STATES:
        assert PIPELINE.stage_of(state).step is not None
    assert {s.value for s in JobState} == TABLE.states
