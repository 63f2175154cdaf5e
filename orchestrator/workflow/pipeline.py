"""What an ordered list of stages gives: which step runs in each state, which stage comes next
for a job's spec, the one transition table, the one check of what a job requires of the
process, the services to build, the labels and crash points. The product's own list is
`journey.PIPELINE`; this module knows no stage, so the stages' context can name it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from orchestrator.config import ConfigError, Settings
from orchestrator.spec import JobSpec
from orchestrator.states import JobState, Transitions
from orchestrator.workflow.stage import Labels, PhaseDetails, Service, Stage

CHECKPOINT_CRASH_POINT = "after_checkpoint"
"""The crash point every committed move of every stage passes."""


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

    def applying(self, spec: JobSpec) -> list[Stage]:
        """The stages a job with this spec goes through, in order."""
        return [stage for stage in self.stages if stage.applies is None or stage.applies(spec)]

    def refusals(self, specs: Iterable[JobSpec], settings: Settings) -> list[str]:
        """What the stages these jobs ask for require and this process lacks, each naming the
        flag, variable or key to set (none: the jobs can run here)."""
        found: list[str] = []
        for spec in specs:
            for stage in self.applying(spec):
                for requirement in stage.requires:
                    refusal = requirement.refusal(settings)
                    if refusal is not None and refusal not in found:
                        found.append(refusal)
        return found

    def check_requirements(self, specs: Iterable[JobSpec], settings: Settings) -> None:
        """ConfigError (exit 2) naming what is missing when a job asks for a stage this process
        cannot run, before anything is sent."""
        if refusals := self.refusals(specs, settings):
            raise ConfigError("; ".join(refusals))

    def services_of(self, spec: JobSpec) -> list[Service[Any, Any]]:
        """The services a job with this spec will use, in the order it first needs them."""
        found: list[Service[Any, Any]] = []
        for stage in self.applying(spec):
            found += [r for r in stage.requires if isinstance(r, Service) and r not in found]
        return found

    def services(self) -> list[Service[Any, Any]]:
        """Every service the stages declare, once each, in the order they are first needed."""
        found: list[Service[Any, Any]] = []
        for stage in self.stages:
            found += [r for r in stage.requires if isinstance(r, Service) and r not in found]
        return found

    @property
    def phases(self) -> list[str]:
        """The per-photo phases, in the order of the stages recording them."""
        return list(dict.fromkeys(stage.phase for stage in self.stages if stage.phase))

    def done_label(self, phase: str) -> str:
        """A photo done for `phase`, as progress says it: "uploaded", "tag done"."""
        return self._labelled(phase).done or f"{phase} done"

    def phase_label(self, phase: str) -> str:
        """What a failed photo's phase is called to the user: "edit download"."""
        return self._labelled(phase).phase or phase

    def details_model(self, phase: str) -> type[PhaseDetails] | None:
        """The model of what `phase` records per photo, if its stage declares one."""
        return next((s.details for s in self.stages if s.phase == phase and s.details), None)

    @property
    def crash_points(self) -> tuple[str, ...]:
        """Every crash point a job of this pipeline can pass, in the order of a job's life."""
        points = [CHECKPOINT_CRASH_POINT]
        for stage in self.stages:
            points += [p for p in stage.crash_points if p not in points]
        return tuple(points)

    def _labelled(self, phase: str) -> Labels:
        """The labels of the stage recording `phase` (none: the defaults)."""
        return next((s.labels for s in self.stages if s.phase == phase), Labels())

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
