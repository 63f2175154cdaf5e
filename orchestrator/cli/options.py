"""The command line's shared parameters, and the job options, each declared once.

A job option is a choice about what a job does (its edit, export, keywords, delivery, output
layout). `JOB_OPTIONS` lists each once: its flag and help, and the job spec field it fills, with
the bounds that field sets. `takes_job_options` gives all of them to every command that takes a
job (`run`, `submit`, `daemon --watch`); the TOML hot folders take the same fields, since
`config.HotFolder` is a JobSpec itself. A process option (`--concurrency`, `--bwlimit`,
`--tag-anyway`) sets the process that drives the jobs, for all of them, and is shown apart.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from annotated_types import Ge, Le
from pydantic import BaseModel
from typer.models import OptionInfo

from orchestrator.cli.errors import fail
from orchestrator.imagen.models import TOOLS, CropAspectRatio, HdrCompression, PhotographyType
from orchestrator.spec import JobSpec, SpecError, TagSpec

T = TypeVar("T")

JOB_PANEL = "Job options"
PROCESS_PANEL = "Process options (for every job this process drives)"

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
JobArgument = Annotated[
    str,
    typer.Argument(help="The job: its id (or first characters), its name, or its folder."),
]
ShootArgument = Annotated[
    str,
    typer.Argument(
        help="The shoot (its name, folder or id: every job of it) or one job of it (its id)."
    ),
]
AgainOption = Annotated[
    bool,
    typer.Option(
        "--again",
        help="Edit a folder whose jobs finished once more, with the options given now "
        "(a new job and Imagen project; its outputs replace the earlier ones).",
    ),
]
AddOption = Annotated[
    bool,
    typer.Option(
        "--add",
        help="Send the photos that came after the shoot's upload (a second card, a lower "
        "--min-rating) in a follow-up job of the same shoot: its options, its folders, "
        "its review and delivery; nothing the shoot sent is sent again.",
    ),
]
FolderArgument = Annotated[Path, typer.Argument(help="The shoot folder (subfolders are included).")]
ProfileOption = Annotated[
    list[str],
    typer.Option(
        "--profile",
        "-p",
        help="Profile key or name (case-insensitive); give one per image type "
        "when the folder has both RAW and JPEG.",
    ),
]

ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        help="Transfers in flight at once, over every job this process drives (default 8).",
        min=1,
        max=256,
        rich_help_panel=PROCESS_PANEL,
    ),
]
BwlimitOption = Annotated[
    str | None,
    typer.Option(
        help="Bandwidth cap in bytes/s over every job this process drives, e.g. 20M.",
        rich_help_panel=PROCESS_PANEL,
    ),
]
TagAnywayOption = Annotated[
    bool,
    typer.Option(
        "--tag-anyway",
        help="Tag what the month's Imagga quota allows when too small (every job this "
        "process drives; ORCH_TAG_ANYWAY).",
        rich_help_panel=PROCESS_PANEL,
    ),
]


def known_tools(tools: list[str]) -> list[str]:
    """The --tool values, refused as a usage error unless each is a tool Imagen has."""
    unknown = [tool for tool in tools if tool not in TOOLS]
    if unknown:
        raise typer.BadParameter(f"unknown tool {unknown[0]!r}; allowed: {', '.join(TOOLS)}")
    return tools


class Sidecars(StrEnum):
    """Where RAW edits (.xmp sidecars) go."""

    edited = "edited"
    beside = "beside"


def within_field(model: type[BaseModel], name: str, *, help: str) -> OptionInfo:
    """An option whose bounds are those the spec's field sets (`ge`, `le`)."""
    rules = model.model_fields[name].metadata
    low = next((cast(float, rule.ge) for rule in rules if isinstance(rule, Ge)), None)
    high = next((cast(float, rule.le) for rule in rules if isinstance(rule, Le)), None)
    option: OptionInfo = typer.Option(min=low, max=high, help=help)
    return option


def _given(value: Any) -> Any:
    """The option's value as the field's (most options)."""
    return value


@dataclass(frozen=True)
class JobOption:
    """One job option: its command-line parameter and the job field its value fills."""

    name: str
    """The parameter's name."""
    kind: Any
    """The value's type as the command line gives it."""
    option: OptionInfo
    """The flag, the help, the bounds, any check of the value."""
    field: str
    """The JobSpec field it fills (`tag.long_side`), or a field a hot folder holds beside the
    spec (`prefix_subfolders`). A section's own field (`tag`, `deliver`) switches it on."""
    default: Any = None
    to_field: Callable[[Any], Any] = _given
    """The field's value from the option's; None when the option says nothing."""
    only_for: tuple[str, str] | None = None
    """(the one command that acts on it, why the others do not): refused by the others."""

    @property
    def flag(self) -> str:
        """The option's long flag, as messages name it."""
        declared = [d for d in self.option.param_decls or () if d.startswith("--")]
        return declared[0] if declared else "--" + self.name.replace("_", "-")

    def parameter(self) -> inspect.Parameter:
        """The parameter a command gets for it."""
        option = copy.copy(self.option)
        option.rich_help_panel = JOB_PANEL
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=self.default,
            annotation=Annotated[self.kind, option],
        )


JOB_OPTIONS: tuple[JobOption, ...] = (
    JobOption(
        "export",
        bool,
        typer.Option(help="Also export JPEGs into FOLDER/exported."),
        "export",
        False,
    ),
    JobOption(
        "photography_type",
        PhotographyType | None,
        typer.Option(case_sensitive=False, help="Genre hint for the AI."),
        "edit.photography_type",
    ),
    JobOption(
        "tool",
        list[str],
        typer.Option(
            "--tool",
            callback=known_tools,
            help=f"AI tool to switch on (repeatable): {', '.join(TOOLS)}.",
        ),
        "edit.tools",
        [],
        lambda tools: sorted(set(tools)),
    ),
    JobOption(
        "crop_aspect_ratio",
        CropAspectRatio | None,
        typer.Option(help="Aspect ratio for the crop tool."),
        "edit.crop_aspect_ratio",
    ),
    JobOption(
        "sky_template",
        int | None,
        typer.Option(help="Sky template id for sky_replacement."),
        "edit.sky_replacement_template_id",
    ),
    JobOption(
        "hdr_compression",
        HdrCompression | None,
        typer.Option(help="Compression of hdr_merge output."),
        "edit.hdr_output_compression",
    ),
    JobOption(
        "tag",
        bool,
        typer.Option(
            "--tag",
            help="Keywords from Imagga into the exported JPEGs (and edited files); "
            "RAW needs --export.",
        ),
        "tag",
        False,
    ),
    JobOption(
        "tag_language",
        list[str],
        typer.Option(
            "--tag-language", help="Keyword language(s), comma-separated or repeated (default en)."
        ),
        "tag.languages",
        [],
        lambda given: [code for item in given for code in item.split(",")] or None,
    ),
    JobOption(
        "tag_threshold",
        float | None,
        within_field(
            TagSpec, "threshold", help="Confidence (0-100) a tag needs to become a keyword (60)."
        ),
        "tag.threshold",
    ),
    JobOption(
        "tag_min",
        int | None,
        within_field(TagSpec, "min_keywords", help="Always at least this many keywords (3)."),
        "tag.min_keywords",
    ),
    JobOption(
        "tag_max",
        int | None,
        within_field(TagSpec, "max_keywords", help="Never more than this many keywords (30)."),
        "tag.max_keywords",
    ),
    JobOption(
        "categorize",
        str | None,
        typer.Option(help="Also categorize with this Imagga categorizer, e.g. personal_photos."),
        "tag.categorizer",
    ),
    JobOption(
        "moderate",
        bool,
        typer.Option("--moderate", help="Flag unsafe photos (Imagga nsfw_beta)."),
        "tag.moderate",
        False,
        lambda moderate: moderate or None,
    ),
    JobOption(
        "tag_long_side",
        int | None,
        within_field(
            TagSpec, "long_side", help="Long side in px of the copy sent to Imagga (1024)."
        ),
        "tag.long_side",
    ),
    JobOption(
        "colors",
        bool,
        typer.Option(
            "--colors",
            help="Also the palette from Imagga: Colors|Name keywords, delivery.json, imgix "
            "fields (1 more request a photo).",
        ),
        "tag.colors",
        False,
        lambda wanted: wanted or None,
    ),
    JobOption(
        "faces",
        bool,
        typer.Option(
            "--faces",
            help="Also the faces from Imagga: MWG face regions in the files and a face count "
            "(1 more request a photo).",
        ),
        "tag.faces",
        False,
        lambda wanted: wanted or None,
    ),
    JobOption(
        "people",
        bool,
        typer.Option(
            "--people",
            help="Also group the faces into persons, named once with `orchestrator people` "
            "(implies --faces; 1 more request a job).",
        ),
        "tag.people",
        False,
        lambda wanted: wanted or None,
    ),
    JobOption(
        "smart_crops",
        bool,
        typer.Option(
            "--smart-crops",
            help="Also Imagga's smart croppings: delivered 1:1, 4:5 and 9:16 crops on the "
            "subject's focal point (1 more request a photo).",
        ),
        "tag.smart_crops",
        False,
        lambda wanted: wanted or None,
    ),
    JobOption(
        "review",
        bool,
        typer.Option(
            help="Wait after keywording until the keywords are approved (the web page, "
            "`orchestrator approve`)."
        ),
        "review",
        False,
    ),
    JobOption(
        "deliver",
        bool,
        typer.Option(
            help="Deliver the exported JPEGs to imgix (IMGIX_API_KEY, IMGIX_SOURCE_ID, "
            "IMGIX_DOMAIN)."
        ),
        "deliver",
        False,
    ),
    JobOption(
        "deliver_path",
        str | None,
        typer.Option(
            help="Origin path template on imgix: {shoot}, {path} (the photo's folders and "
            "name in the shoot), {job_name}, {job_id}, {file_name}, {stem} "
            "(default {shoot}/{path})."
        ),
        "deliver.path",
    ),
    JobOption(
        "deliver_description",
        str | None,
        typer.Option(help="Description given to each delivered asset in imgix."),
        "deliver.description",
    ),
    JobOption(
        "min_rating",
        int | None,
        within_field(
            JobSpec,
            "min_rating",
            help="Send only photos rated this or more (their sidecar's or their own "
            "xmp:Rating), never a rejected one; the rest are listed. A later --add with a "
            "lower rating sends them.",
        ),
        "min_rating",
    ),
    JobOption(
        "keyword",
        list[str],
        typer.Option(
            "--keyword",
            help="A keyword of the shoot itself (the couple, the venue; repeatable), written "
            "into every photo beside Imagga's; `orchestrator keywords SHOOT --shoot` edits "
            "them later.",
        ),
        "keywords",
        [],
        lambda words: words or None,
    ),
    JobOption(
        "sidecars",
        Sidecars,
        typer.Option(
            case_sensitive=False,
            help="RAW sidecars (.xmp) under FOLDER/edited, or beside the RAWs where Lightroom "
            "reads them (an existing sidecar is kept as NAME.xmp.orig).",
        ),
        "outputs.sidecars",
        Sidecars.edited,
        lambda sidecars: sidecars.value,
    ),
    JobOption(
        "flat",
        bool,
        typer.Option(
            "--flat", help="All outputs side by side in edited/ and exported/, not in subfolders."
        ),
        "outputs.subfolders",
        False,
        lambda flat: not flat,
    ),
    JobOption(
        "output",
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Put edited/, exported/ and delivered/ under this folder instead of the "
            "shoot folder, in the same layout (a shoot on a read-only card or share).",
            file_okay=False,
        ),
        "outputs.folder",
        None,
        lambda folder: None if folder is None else str(folder),
    ),
    JobOption(
        "prefix_subfolders",
        bool,
        typer.Option(
            "--prefix-subfolders",
            help="Send photos of subfolders to Imagen as SUBFOLDER_NAME (two camera bodies' "
            "IMG_0001.CR2 in Card 1/ and Card 2/); the outputs keep the photos' own names.",
        ),
        "prefix_subfolders",
        False,
    ),
    JobOption(
        "notify",
        list[str],
        typer.Option(
            "--notify",
            help="Apprise URL (repeatable) told when the watched folder's jobs wait for "
            "review, complete, fail or pause, beside ORCH_NOTIFY; e.g. "
            "tgram://BOT_TOKEN/CHAT_ID. It may hold secrets: prefer the configuration file.",
        ),
        "notify",
        [],
        only_for=(
            "daemon",
            "the daemon tells the studio about its jobs (ORCH_NOTIFY, or a watched folder's "
            "--notify); a job's notify URLs, which may hold secrets, are not stored with it",
        ),
    ),
)
"""Every job option, in the order `--help` lists them."""

SECTIONS = {
    "tag": "{flag} and the other tag options need --tag",
    "deliver": "--deliver-path and --deliver-description go with --deliver",
}
"""The spec's optional sections, switched on by their own option, and what is said when one
of their options comes without it."""


@dataclass(frozen=True)
class JobChoices:
    """The job options as one command line gave them."""

    values: Mapping[str, Any] = field(
        default_factory=lambda: {option.name: option.default for option in JOB_OPTIONS}
    )
    """Each option's value, by parameter name."""

    @functools.cached_property
    def spec(self) -> JobSpec:
        """The job spec they ask for; a usage error (exit 2) names what cannot be."""
        fields: dict[str, Any] = {}
        flags: dict[str, str] = {}
        for option in JOB_OPTIONS:
            top, _, inner = option.field.partition(".")
            if top not in JobSpec.model_fields or (not inner and top in SECTIONS):
                continue
            value = option.to_field(self.values[option.name])
            if value is None:
                continue
            if inner:
                fields.setdefault(top, {})[inner] = value
                flags.setdefault(top, option.flag)
            else:
                fields[top] = value
        for section, orphans in SECTIONS.items():
            if not self.values[section]:
                if section in fields:
                    fail(orphans.format(flag=flags[section]))
                continue
            fields.setdefault(section, {})
        if fields["review"] and "tag" not in fields:
            fail("--review holds the job for a person to review its keywords: add --tag")
        try:
            return JobSpec.build(**fields)
        except SpecError as exc:
            fail(str(exc))

    @property
    def prefix_subfolders(self) -> bool:
        """Send subfolders' photos under prefixed names (a request's field, not the spec's)."""
        return bool(self.values["prefix_subfolders"])

    @property
    def notify(self) -> list[str]:
        """Apprise URLs for a watched folder's jobs (a hot folder's field, not the spec's)."""
        return list(self.values["notify"])

    def beyond_defaults(self) -> bool:
        """Whether these ask for anything a command line without job options would not."""
        return self.spec.to_stored() != JobChoices().spec.to_stored()


def takes_job_options(command: Callable[..., T]) -> Callable[..., T]:
    """`command` with every job option as a parameter, handed to it as one `job: JobChoices`.

    The options take the place of the `job` parameter, so each command says where they stand
    among its own.
    """
    own = inspect.signature(command, eval_str=True)
    parameters: list[inspect.Parameter] = []
    for parameter in own.parameters.values():
        if parameter.name == "job":
            parameters += [option.parameter() for option in JOB_OPTIONS]
        else:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def with_job_options(**given: Any) -> T:
        choices = JobChoices({option.name: given.pop(option.name) for option in JOB_OPTIONS})
        for option in JOB_OPTIONS:
            if option.only_for is not None and choices.values[option.name] != option.default:
                acting, why = option.only_for
                if command.__name__ != acting:
                    fail(f"{option.flag} is for `orchestrator {acting} --watch`: {why}")
        return command(**given, job=choices)

    with_job_options.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_job_options.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_job_options
