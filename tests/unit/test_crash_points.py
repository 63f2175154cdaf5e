"""Every crash point in the code is walked by a test that fails when the point is not reached.

The points are read from the source (tests/crash_points.py), so a new `crash_point(...)` call
fails here until a walk kills a process at it. The walks themselves fail, never skip, when a
run ends without reaching their point: tests/e2e/test_crash_resume.py and
tests/integration/test_replay.py for a plain run's points, tests/e2e/test_tagging.py,
test_analyses.py and test_delivery.py for their stages'.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.workflow.journey import PIPELINE
from tests.crash_points import point_of, points_in_code
from tests.e2e import test_analyses, test_crash_resume, test_delivery, test_tagging
from tests.integration import test_replay


def test_every_point_in_the_code_is_walked() -> None:
    walked = {
        "test_crash_resume": set(test_crash_resume.POINTS),
        "test_tagging": {point_of(kill) for kill, _ in test_tagging.KILLS},
        "test_delivery": {point_of(kill) for kill, _ in test_delivery.KILLS},
        "test_analyses": {point_of(kill) for kill, _ in test_analyses.KILLS},
    }
    code = points_in_code()
    every = set().union(*walked.values())
    missing = {point: where for point, where in code.items() if point not in every}
    assert not missing, f"crash points no test kills a process at: {missing}"
    assert every <= set(code), f"walked points the code lacks: {every - set(code)}"
    # The in-process replay judges each invariant at every point a plain run passes.
    assert {point for point, _ in test_replay.SCENARIOS} == walked["test_crash_resume"]


def test_the_stages_declare_the_points_in_the_code() -> None:
    assert sorted(PIPELINE.crash_points) == sorted(points_in_code())


def test_points_are_followed_through_parameters_and_fields(tmp_path: Path) -> None:
    (tmp_path / "intent.py").write_text(
        "def once(ctx, *, action):\n    crash_point(f'before_{action}')\n    crash_point('plain')\n"
    )
    (tmp_path / "steps.py").write_text(
        "class Process:\n"
        "    kind: str\n"
        "    action: str\n"
        "def request(ctx, process: Process):\n"
        "    once(ctx, action=f'{process.action}_request')\n"
        "def make():\n"
        "    once(None, action='create')\n"
        "    return Process('a', 'edit'), Process('b', action='export')\n"
    )

    assert set(points_in_code(tmp_path)) == {
        "plain",
        "before_create",
        "before_edit_request",
        "before_export_request",
    }


def test_a_point_that_cannot_be_followed_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "odd.py").write_text("def f(names):\n    crash_point(names[0])\n")

    with pytest.raises(AssertionError, match=r"odd.py:2: cannot tell which crash point"):
        points_in_code(tmp_path)
