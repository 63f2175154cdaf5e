"""Every way into a job offers the same job options: `run`, `submit`, `daemon --watch` and the
TOML hot folders, all from the one list in cli/options.py, which covers the whole job spec."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer

from orchestrator.cli.app import app
from orchestrator.cli.options import JOB_OPTIONS, JOB_PANEL, PROCESS_PANEL, SECTIONS, JobChoices
from orchestrator.config import HotFolder, load_settings
from orchestrator.spec import JobSpec

COMMANDS = ("run", "submit", "daemon")
OWN = {
    "run": {"folder", "profile", "again", "add", "json_output"},
    "submit": {"folder", "profile", "again", "add", "json_output"},
    "daemon": {"watch", "profile"},
}
"""What each command takes beside the job and process options: the folder and its profiles."""
PROCESS = {
    "run": {"concurrency", "bwlimit", "tag_anyway", "help"},
    "submit": {"help"},
    "daemon": {
        "listen",
        "public_url",
        "max_jobs",
        "lease_ttl",
        "settle",
        "concurrency",
        "bwlimit",
        "tag_anyway",
        "help",
    },
}

SAMPLES: dict[str, tuple[list[str], list[str]]] = {
    "export": ([], ["--export"]),
    "photography_type": ([], ["--photography-type", "wedding"]),
    "tool": ([], ["--tool", "crop", "--tool", "smooth_skin"]),
    "crop_aspect_ratio": ([], ["--crop-aspect-ratio", "4X5"]),
    "sky_template": ([], ["--sky-template", "7"]),
    "hdr_compression": ([], ["--hdr-compression", "LOSSLESS"]),
    "tag": ([], ["--tag"]),
    "tag_language": (["--tag"], ["--tag-language", "de,fr"]),
    "tag_threshold": (["--tag"], ["--tag-threshold", "42.5"]),
    "tag_min": (["--tag"], ["--tag-min", "5"]),
    "tag_max": (["--tag"], ["--tag-max", "12"]),
    "categorize": (["--tag"], ["--categorize", "personal_photos"]),
    "moderate": (["--tag"], ["--moderate"]),
    "tag_long_side": (["--tag"], ["--tag-long-side", "2048"]),
    "colors": (["--tag"], ["--colors"]),
    "faces": (["--tag"], ["--faces"]),
    "people": (["--tag"], ["--people"]),
    "smart_crops": (["--tag"], ["--smart-crops"]),
    "review": (["--tag"], ["--review"]),
    "deliver": (["--export"], ["--deliver"]),
    "deliver_path": (["--export", "--deliver"], ["--deliver-path", "web/{stem}.jpg"]),
    "deliver_description": (["--export", "--deliver"], ["--deliver-description", "Spring"]),
    "min_rating": ([], ["--min-rating", "3"]),
    "keyword": ([], ["--keyword", "Smith wedding", "--keyword", "Villa Rosa"]),
    "sidecars": ([], ["--sidecars", "beside"]),
    "flat": ([], ["--flat"]),
    "output": ([], ["--output", "/media/share/smith-edits"]),
    "prefix_subfolders": ([], ["--prefix-subfolders"]),
    "notify": ([], ["--notify", "json://127.0.0.1:9/"]),
}
"""For each job option: the options it needs, and the option given with a value."""


def command(name: str) -> Any:
    """The click command typer builds for `name`."""
    return typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]


def described(name: str, param: Any) -> tuple[Any, ...]:
    """What a user sees of an option in command `name`'s help (flags, value, help, default,
    bounds), its default value and its help panel."""
    context = command(name).make_context(name, [], resilient_parsing=True)
    return param.get_help_record(context), param.default, param.rich_help_panel


def choices(name: str, args: list[str]) -> JobChoices:
    """The job options command `name` parses from `args`."""
    positional = [] if name == "daemon" else ["/shoot"]
    params = command(name).make_context(name, [*positional, *args]).params
    return JobChoices({option.name: params[option.name] for option in JOB_OPTIONS})


def test_run_submit_and_the_daemon_offer_the_same_job_options() -> None:
    offered = {}
    for name in COMMANDS:
        params = {p.name: p for p in command(name).params}
        job = {key: described(name, p) for key, p in params.items() if key not in OWN[name]}
        job = {key: value for key, value in job.items() if key not in PROCESS[name]}
        offered[name] = job
        for key in PROCESS[name] - {"help"}:
            assert described(name, params[key])[-1] == PROCESS_PANEL, (name, key)

    assert offered["run"] == offered["submit"] == offered["daemon"]
    assert list(offered["run"]) == [option.name for option in JOB_OPTIONS]
    assert {shown[-1] for shown in offered["run"].values()} == {JOB_PANEL}


def leaves(model: type[Any], prefix: str = "") -> set[str]:
    """The fields of a spec model, and those of its sections, as dotted paths."""
    found = set()
    for name, info in model.model_fields.items():
        kinds = [k for k in getattr(info.annotation, "__args__", (info.annotation,)) if k]
        section = next(
            (k for k in kinds if isinstance(k, type) and hasattr(k, "model_fields")), None
        )
        if section is not None:
            found |= leaves(section, f"{prefix}{name}.")
        else:
            found.add(prefix + name)
    return found


def test_every_field_of_a_hot_folder_but_its_place_is_a_job_option() -> None:
    fields = leaves(HotFolder) - {"version", "path", "profiles"}
    switches = {name for name in SECTIONS if JobSpec.model_fields[name].default is None}

    assert {option.field for option in JOB_OPTIONS} == fields | switches
    assert switches == {"tag", "deliver"}
    assert "tag.long_side" in fields and "outputs.sidecars" in fields


@pytest.mark.parametrize("option", JOB_OPTIONS, ids=lambda option: option.name)
def test_each_job_option_reaches_the_job_the_same_way_from_every_command_and_the_toml(
    option: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs, given = SAMPLES[option.name]
    parsed = [choices(name, [*needs, *given]) for name in COMMANDS]
    without = choices("run", needs)

    asked = (parsed[0].spec, parsed[0].prefix_subfolders, parsed[0].notify)
    assert asked != (without.spec, without.prefix_subfolders, without.notify)  # it changes the job
    assert all((p.spec, p.prefix_subfolders, p.notify) == asked for p in parsed)

    config = tmp_path / "config.toml"
    config.write_text(hot_folder_toml(asked[0], prefix_subfolders=asked[1], notify=asked[2]))
    for key in [k for k in os.environ if k.startswith(("ORCH_", "IMAGEN_", "IMGIX_", "IMAGGA_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ORCH_CONFIG", str(config))
    [hot] = load_settings().hot_folders

    notify = [url.get_secret_value() for url in hot.notify]
    assert (hot.spec(), hot.prefix_subfolders, notify) == asked


def hot_folder_toml(spec: JobSpec, *, prefix_subfolders: bool, notify: list[str]) -> str:
    """A config file with one hot folder asking for `spec`, as a user would write it."""
    lines = ["[[hot_folders]]", 'path = "/in"', 'profiles = ["1001"]']
    lines.append(f"prefix_subfolders = {json.dumps(prefix_subfolders)}")
    lines.append(f"notify = {json.dumps(notify)}")
    for key, value in spec.to_stored().items():
        lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)
