"""The ordered stages of a job, and everything derived from their order: which step runs in
each state, which stage comes next for a job's spec, and the one transition table."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.spec import JobSpec
from orchestrator.states import JobState, Transitions
from orchestrator.workflow import deliver, download, processing, project, review, tag, upload
from orchestrator.workflow.stage import Stage


class Pipeline:
    """Stages in the order a job goes through them (those a job does not ask for are skipped)."""

    def __init__(self, stages: Sequence[Stage], *, spec_model: type[JobSpec] = JobSpec) -> None:
        owners: dict[str, Stage] = {}
        for stage in stages:
            for state in stage.states:
                if state in owners:
                    raise ValueError(
                        f"state {state} belongs to {owners[state].name} and {stage.name}"
                    )
                owners[state] = stage
        self.stages = tuple(stages)
        self.spec_model = spec_model
        """The spec model jobs of this pipeline are read with."""
        self._owners = owners
        self.transitions = Transitions(self._forward_moves())
        self.waiting_states = frozenset().union(*(stage.waiting for stage in self.stages))

    def stage_of(self, state: str) -> Stage:
        """The stage owning a live state."""
        return self._owners[state]

    def next_state(self, stage: Stage, spec: JobSpec) -> str:
        """Where a job goes when `stage` is done: the next stage it asks for, or completed."""
        for later in self.stages[self.stages.index(stage) + 1 :]:
            if later.applies is None or later.applies(spec):
                return later.states[0]
        return JobState.COMPLETED

    def with_stage(
        self, stage: Stage, *, after: str, spec_model: type[JobSpec] | None = None
    ) -> Pipeline:
        """This pipeline with `stage` inserted after the stage named `after`."""
        names = [s.name for s in self.stages]
        at = names.index(after) + 1
        return Pipeline(
            [*self.stages[:at], stage, *self.stages[at:]], spec_model=spec_model or self.spec_model
        )

    def _forward_moves(self) -> dict[str, set[str]]:
        """Within a stage, each state to the next; from a stage's last state, to the first
        state of each later stage a spec can lead to (skipping stages not asked for). Stages
        sharing one `applies` come together: none is entered halfway along, nor left early."""
        moves: dict[str, set[str]] = {}
        for index, stage in enumerate(self.stages):
            for current, following in zip(stage.states, stage.states[1:], strict=False):
                moves[current] = {following}
            ends = moves.setdefault(stage.states[-1], set())
            for position in range(index + 1, len(self.stages)):
                later, before = self.stages[position], self.stages[position - 1]
                if position == index + 1 or later.applies is not before.applies:
                    ends.add(later.states[0])
                if later.applies is None or later.applies is stage.applies:
                    break
            else:
                ends.add(JobState.COMPLETED)
        return moves


PIPELINE = Pipeline(
    [
        project.STAGE,
        upload.STAGE,
        processing.EDIT_STAGE,
        download.EDITS_STAGE,
        processing.EXPORT_STAGE,
        download.EXPORTS_STAGE,
        tag.STAGE,
        review.STAGE,
        deliver.STAGE,
    ]
)
"""The product's stages, in order."""
