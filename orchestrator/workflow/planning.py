"""Turning a shoot folder and the user's options into jobs: new ones, or the ones to resume."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import OperatorRefusal
from orchestrator.imagen.errors import EditOptionsError
from orchestrator.imagen.files import image_type_of
from orchestrator.imagen.models import EditChoices, ImageType, Profile
from orchestrator.spec import JobSpec, OutputLayout
from orchestrator.states import JobState
from orchestrator.store import shoots
from orchestrator.store.models import Job
from orchestrator.store.queries import NewJob, Store
from orchestrator.words import plural
from orchestrator.workflow.outputs import Need, job_needs, new_job_folders, room_refusals
from orchestrator.workflow.picks import (
    Unpicked,
    picked,
    record_kept_back,
    shoot_min_rating,
)
from orchestrator.workflow.shoot import (
    PREFIX_OPTION,
    FoundPhoto,
    RefusedFile,
    scan_shoot,
)
from orchestrator.workflow.shoot_record import RECORD, RecordedJob, add_job, read_record
from orchestrator.workflow.shoot_sync import (
    FINISHED,
    NOT_UPLOADED_YET,
    names,
    new_photo,
    sync_photos,
)
from orchestrator.workflow.stage import Demand
from orchestrator.workflow.tag import kind_refusal
from orchestrator.workflow.upload import REFUSED

if TYPE_CHECKING:
    from orchestrator.imagen.client import ImagenClient


SHOWN_REFUSED = 20
"""Refused files listed one per note, each with its reason, before the rest are counted."""


class PlanError(OperatorRefusal, ValueError):
    """The request cannot become jobs (bad profile, bad options); the message says why."""


class NotReady(PlanError):
    """What the folder's jobs need is missing or wrong (a setting, a key, a folder that cannot
    be written, a disk without room): every problem at once, before anything is sent."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        listed = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"nothing was sent: {plural(len(self.problems), 'problem')} to put right first\n"
            f"{listed}"
        )


ReadyCheck = Callable[[Sequence[Demand]], Awaitable[list[str]]]
"""Asks the services the jobs will use whether they can (settings, keys, quota): why not, in
one line each (none: they can). Given by the command; called once, before any job is made."""


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """What the user asked `run` (or `submit`) to do with one shoot folder."""

    source: Path
    """The shoot folder."""
    profiles: Sequence[str] = ()
    """Profile keys or names (case-insensitive); one per image type in the folder."""
    spec: JobSpec = field(default_factory=JobSpec)
    """What each job of the folder is asked to do."""
    again: bool = False
    """Edit the folder once more in new jobs (new Imagen projects) with these options, even
    though earlier jobs of it finished; their outputs are replaced."""
    prefix_subfolders: bool = False
    """Send photos of subfolders under names prefixed with their subfolder, so that two
    camera bodies' IMG_0001.CR2 can share a shoot."""
    options_given: bool = True
    """Whether the user gave job options (profile, edit options) that an existing job must
    be told it does not take."""
    add: bool = False
    """Send the photos that came after the shoot's upload (a second card, a lower
    `--min-rating`) in a follow-up job of the shoot: its spec and profile, its output
    folders, one more Imagen project; never a photo the shoot sent already."""
    exiftool: str = "exiftool"
    """The exiftool program (ORCH_EXIFTOOL) that reads ratings for `--min-rating` and writes
    the shoot's words for `--keyword`: checked before anything is sent."""


@dataclass
class Plan:
    """The jobs of one shoot folder and what the user should hear about them."""

    jobs: list[Job] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def plan_jobs(
    store: Store, client: ImagenClient, request: RunRequest, *, ready: ReadyCheck | None = None
) -> Plan:
    """Find the shoot's jobs to resume, create the missing ones, and report what was skipped.

    A folder is one shoot: its jobs (one per Imagen project) are the first ones of each image
    type and, with `add`, the follow-ups for photos that came after the upload. A photo is
    sent once in a shoot, whichever job sends it. Before a job is made or Imagen asked
    anything, the output folders are checked (writable, room for what the jobs will bring
    back) and so, through `ready`, are the services: every problem is refused at once
    (NotReady).
    """
    source = request.source.resolve()
    _check_output_folder(source, request.spec)
    of_source = await store.jobs_for_source(str(source))
    shoot = await shoots.current_shoot(store, str(source))
    of_shoot = [
        j
        for j in of_source
        if shoot is not None and j.shoot_id == shoot.id and j.state != JobState.CANCELLED
    ]
    if request.again:
        _check_nothing_live(_latest_by_kind(of_shoot).values())
        shoot, of_shoot = None, []
    by_kind: dict[ImageType, list[Job]] = {}
    for job in of_shoot:  # newest first
        by_kind.setdefault(ImageType(job.image_type), []).append(job)
    recorded = {j.id: await store.recorded_photos(j.id) for j in of_shoot}
    known = {p.rel_path: (p.size, p.mtime_ns) for photos in recorded.values() for p in photos}
    # A big folder takes a while; the photos the jobs recorded, unchanged, are not read again.
    scan = await asyncio.to_thread(
        functools.partial(
            scan_shoot, source, prefix_subfolders=request.prefix_subfolders, known=known
        )
    )
    plan = Plan()
    if scan.skipped:
        shown = ", ".join(scan.skipped[:5]) + (" …" if len(scan.skipped) > 5 else "")
        plan.notes.append(f"skipped {len(scan.skipped)} unsupported files: {shown}")
    plan.notes += [f"refused {r.name}, not sent: {r.reason}" for r in scan.refused[:SHOWN_REFUSED]]
    if len(scan.refused) > SHOWN_REFUSED:
        plan.notes.append(f"… and {len(scan.refused) - SHOWN_REFUSED} more files refused")
    existing = {kind: jobs[0] for kind, jobs in by_kind.items()}
    if request.options_given:
        plan.notes += [
            note for job in existing.values() if (note := _options_not_applied(job, request))
        ]
    min_rating = shoot_min_rating(request.spec.min_rating, existing.values())
    kept_back: list[Unpicked] = []
    found = scan.photos
    if min_rating is not None:
        found, kept_back = await picked(scan.photos, set(known), min_rating, request.exiftool)
    missing = [t for t in found if t not in existing]
    for kind in missing:  # before any job is made, so a refusal leaves none half-planned
        if refusal := kind_refusal(request.spec, kind):
            raise PlanError(refusal)
    if missing and not request.again:
        await _check_not_seen_elsewhere(store, source, {j.id for j in of_source})
    kinds = set(found) | set(by_kind)
    fresh = [
        _fresh(scan.folder, kind, found[kind], _with_layout(request.spec), len(kinds) > 1)
        for kind in missing
    ]
    follow_ups = (
        [
            follow_up
            for kind, jobs in by_kind.items()
            if (follow_up := _follow_up(kind, jobs, found.get(kind, []), known, request))
        ]
        if request.add
        else []
    )
    if any(planned.spec.keywords for planned in (*fresh, *follow_ups)):
        _check_exiftool("--keyword writes the shoot's words into its photos", request.exiftool)
    await _check_ready(store, [*fresh, *follow_ups], existing.values(), ready, type(request.spec))
    profiles = await _resolve_profiles(client, request.profiles, missing) if missing else {}
    shoot_id = shoot.id if shoot else ""
    if (fresh or follow_ups) and shoot is None:
        shoot_id = await store.create_shoot(
            name=source.name, source=str(source), keywords=request.spec.keywords
        )
    made: dict[ImageType, Job] = {}
    for planned in fresh:
        profile = profiles[planned.kind]
        made[planned.kind] = await _create_job(
            store,
            planned,
            name=f"{scan.folder.name}{_suffix(planned.kind, len(kinds) > 1)}",
            profile=(profile.profile_key, profile.profile_name),
            shoot_id=shoot_id,
            notes=plan.notes,
        )
    for kind, jobs in sorted(by_kind.items()):
        plan.jobs += reversed(jobs)
        plan.notes += await sync_photos(
            store,
            jobs,
            recorded,
            found.get(kind, []),
            follow_up=request.add,
        )
    for planned in follow_ups:
        latest = by_kind[planned.kind][0]
        job = await _create_job(
            store,
            planned,
            name=_follow_up_name(by_kind[planned.kind]),
            profile=(latest.profile_key, latest.profile_name or ""),
            shoot_id=shoot_id,
            notes=plan.notes,
        )
        plan.jobs.append(job)
        plan.notes.append(
            f"{job.name}: {plural(len(planned.photos), 'photo')} that came after the upload "
            f"({names(p.rel_path for p in planned.photos)}) join the shoot in this follow-up "
            "job, with the shoot's options"
        )
    plan.jobs += made.values()
    for kind, job in existing.items():
        if kind not in scan.photos:
            plan.notes.append(f"{job.name}: no {kind.value} photos are left in the folder")
    plan.notes += await record_kept_back(store, plan.jobs, kept_back, min_rating)
    await _record_refused(store, plan.jobs, scan.refused)
    return plan


@dataclass(frozen=True)
class _Planned:
    """A job to be made: its photos, spec and output folders."""

    kind: ImageType
    photos: list[FoundPhoto]
    spec: JobSpec
    edited: Path
    exported: Path
    source: Path


def _fresh(
    folder: Path, kind: ImageType, photos: list[FoundPhoto], spec: JobSpec, typed: bool
) -> _Planned:
    """The first job of an image type in the shoot (`typed`: one of several types, so its
    outputs get a subfolder of their type)."""
    edited, exported = new_job_folders(folder, spec, kind.value if typed else "")
    return _Planned(kind, photos, spec, edited, exported, folder)


def _suffix(kind: ImageType, typed: bool) -> str:
    return f" ({kind.value})" if typed else ""


def _latest_by_kind(jobs: Iterable[Job]) -> dict[str, Job]:
    latest: dict[str, Job] = {}
    for job in jobs:  # newest first
        latest.setdefault(job.image_type, job)
    return latest


def _follow_up(
    kind: ImageType,
    jobs: list[Job],
    found: list[FoundPhoto],
    known: Mapping[str, tuple[int, int]],
    request: RunRequest,
) -> _Planned | None:
    """The follow-up job for the photos of `kind` that no job of the shoot holds, once its
    latest job is past its upload: the shoot's spec (a lower `--min-rating` given now
    included), its output folders. None when there are none, or the latest job still takes
    photos."""
    latest, first = jobs[0], jobs[-1]
    late = [p for p in found if p.rel_path not in known]
    if not late or latest.state in NOT_UPLOADED_YET:
        return None
    spec = type(request.spec).from_stored(latest.options)
    if request.spec.min_rating is not None:
        spec = spec.model_copy(update={"min_rating": request.spec.min_rating})
    taken = {Path(path).stem.lower() for path in known}
    clashing = [p for p in late if Path(p.file_name).stem.lower() in taken]
    if clashing:
        raise PlanError(
            f"{latest.name}: new photos {names(p.rel_path for p in clashing)} have the same "
            "name as photos the shoot sent already; rename them (or run with "
            f"{PREFIX_OPTION} from the start) so their outputs do not meet"
        )
    return _Planned(
        kind, late, spec, Path(first.edited_dir), Path(first.exported_dir), Path(first.source)
    )


def _check_exiftool(why: str, executable: str) -> None:
    """PlanError, before anything is sent, if exiftool cannot be run."""
    from orchestrator.integrations.keywords import ExiftoolMissing, KeywordFiles

    try:
        KeywordFiles(executable).check()
    except ExiftoolMissing as exc:
        raise PlanError(f"{why}: {exc}") from None


def _follow_up_name(jobs: list[Job]) -> str:
    """ "smith-wedding (JPG) +1": the first job's name and the follow-up's number."""
    return f"{jobs[-1].name} +{len(jobs)}"


async def _record_refused(
    store: Store, jobs: Sequence[Job], refused: Sequence[RefusedFile]
) -> None:
    """Name each refused file in the history of the job of its type (else the first job),
    once: the job's result, `status` and the page list it."""
    if not jobs or not refused:
        return
    by_type: dict[str, Job] = {}
    for job in jobs:  # the shoot's first job of each type keeps the record
        by_type.setdefault(job.image_type, job)
    assigned: dict[str, list[RefusedFile]] = {}
    for file in refused:
        kind = image_type_of(file.name)
        job = by_type.get(kind.value if kind else "", jobs[0])
        assigned.setdefault(job.id, []).append(file)
    for job_id, files in assigned.items():
        known = {
            (entry.get("path"), entry.get("reason"))
            for event in await store.events(job_id)
            if event.kind == REFUSED and event.data
            for entry in event.data.get("files", [])
        }
        new = [f for f in files if (f.name, f.reason) not in known]
        if new:
            await store.add_event(
                job_id,
                REFUSED,
                f"{plural(len(new), 'file')} of the shoot refused, not sent: "
                + names(str(f) for f in new),
                data={"files": [{"path": f.name, "reason": f.reason} for f in new]},
            )


async def _check_not_seen_elsewhere(store: Store, source: Path, known: set[str]) -> None:
    """Refuse to start the shoot over when its record names jobs this database does not hold
    for it (another database, or the folder edited under another path): its outputs would be
    silently redone and overwritten."""
    record = await asyncio.to_thread(read_record, source)
    strangers = [job for job in record.jobs if job.job_id not in known]
    if not strangers:
        return
    here = database_name(store)
    seen = "; ".join(
        f"job {job.job_id[:8]} (project {job.project_name!r}, database {job.database})"
        for job in strangers[-3:]
    )
    elsewhere = sorted({job.database for job in strangers if job.database != here})
    hint = (
        f"to go on with it, point ORCH_DATABASE_URL at {elsewhere[-1]}; "
        if elsewhere
        else "it was edited under another path (the folder was moved or copied); "
    )
    raise PlanError(
        f"this shoot was edited before by {seen}, which this database ({here}) does not hold "
        f"for this folder. {hint}to edit the shoot once more here, add --again (its outputs "
        f"replace those in the folder). The record is {source / RECORD}"
    )


def database_name(store: Store) -> str:
    """The job database's URL as the shoot record keeps it: its password hidden."""
    return store.engine.url.render_as_string(hide_password=True)


def _check_nothing_live(jobs: Iterable[Job]) -> None:
    """Refuse --again while a job of the folder still runs: two edits would share outputs."""
    for job in jobs:
        if job.state not in (JobState.COMPLETED, JobState.FAILED):
            raise PlanError(
                f"{job.name}: job {job.id[:8]} of this folder is still {job.state}; let it "
                f"finish (or `orchestrator cancel {job.id[:8]}`) before editing it --again"
            )


def _options_not_applied(job: Job, request: RunRequest) -> str | None:
    """A note when the options given now differ from those the existing job runs with."""
    asked, kept = request.spec.to_stored(), job.options
    if "outputs" not in kept and asked.get("outputs") == {}:
        del asked["outputs"]  # a job from before layouts, asked nothing but the default one
    differ = [key for key in sorted(set(asked) | set(kept)) if asked.get(key) != kept.get(key)]
    if request.add:  # a lower rating given with --add is what picks the follow-up's photos
        differ = [key for key in differ if key != "min_rating"]
    refs = {ref.strip().casefold() for ref in request.profiles}
    if refs and not refs & {str(job.profile_key), (job.profile_name or "").casefold()}:
        differ.insert(0, "profile")
    if not differ:
        return None
    return (
        f"{job.name}: job {job.id[:8]} ({job.state}) keeps the options it was started with; "
        f"the {', '.join(differ)} given now are not applied to it. To edit the folder again "
        "with them, add --again (a new job and Imagen project; its outputs replace these)"
    )


async def _resolve_profiles(
    client: ImagenClient, refs: Sequence[str], kinds: Sequence[ImageType]
) -> dict[ImageType, Profile]:
    if not refs:
        raise PlanError(
            "choose a profile with --profile KEY or NAME (`orchestrator profiles` lists yours)"
        )
    available = await client.list_profiles()
    chosen: list[Profile] = []
    for ref in refs:
        matches = [
            p
            for p in available
            if str(p.profile_key) == ref.strip()
            or p.profile_name.casefold() == ref.strip().casefold()
        ]
        if not matches:
            raise PlanError(
                f"no profile {ref!r} in this account; `orchestrator profiles` "
                "lists the ones you have"
            )
        chosen += matches
    resolved: dict[ImageType, Profile] = {}
    for kind in kinds:
        fits = [p for p in chosen if p.image_type is kind]
        if not fits:
            names = ", ".join(f"{p.profile_name} ({p.image_type.value})" for p in chosen)
            others = (
                ", ".join(
                    f"{p.profile_key} {p.profile_name}" for p in available if p.image_type is kind
                )
                or "none in this account"
            )
            raise PlanError(
                f"the folder has {kind.value} photos but the chosen profile "
                f"({names}) is not for {kind.value}; add --profile with one of: "
                f"{others}"
            )
        if len({p.profile_key for p in fits}) > 1:
            raise PlanError(f"several chosen profiles fit the {kind.value} photos; give one")
        resolved[kind] = fits[0]
    return resolved


def check_edit(edit: EditChoices, kind: ImageType) -> None:
    """Refuse edit options that do not suit this image type, with PlanError."""
    try:
        edit.check_for(kind)
    except EditOptionsError as exc:
        raise PlanError(str(exc)) from exc


async def _create_job(
    store: Store,
    planned: _Planned,
    *,
    name: str,
    profile: tuple[int, str],
    shoot_id: str,
    notes: list[str],
) -> Job:
    check_edit(planned.spec.edit, planned.kind)
    job_id = uuid.uuid4().hex
    folder = planned.source
    await store.create_job(
        NewJob(
            id=job_id,
            name=name,
            source=str(folder),
            edited_dir=str(planned.edited),
            exported_dir=str(planned.exported),
            image_type=planned.kind.value,
            profile_key=profile[0],
            profile_name=profile[1],
            spec=planned.spec.to_stored(),
            project_name=project_name(name, job_id),
            shoot_id=shoot_id,
        ),
        [new_photo(p) for p in planned.photos],
    )
    job = await store.get_job(job_id)
    entry = RecordedJob(
        job_id=job.id,
        image_type=job.image_type,
        project_name=job.project_name,
        database=database_name(store),
        created_at=job.created_at,
    )
    try:
        await asyncio.to_thread(add_job, folder, entry)
    except OSError as exc:
        notes.append(
            f"{job.name}: cannot keep the shoot's record in {folder / RECORD} "
            f"({exc.strerror or exc}); another database would not recognise this shoot"
        )
    return job


PROJECT_NAME_CHARS = 80
"""Longest shoot name kept in a project's name (the column holds 100)."""


def project_name(shoot: str, job_id: str) -> str:
    """The job's Imagen project name: the shoot's name and the job id's first 8 characters.

    Readable in Imagen's web app, unique (names are unique per account), and made from the job
    alone, so a run that crashed after creating the project finds it under the same name.
    """
    readable = " ".join("".join(c if c.isprintable() else " " for c in shoot).split())
    return f"{readable[:PROJECT_NAME_CHARS].rstrip() or 'shoot'} {job_id[:8]}"


def _check_output_folder(source: Path, spec: JobSpec) -> None:
    """Refuse an --output folder inside the shoot: the next scan would take the outputs for
    photos."""
    folder = spec.outputs.folder if spec.outputs else None
    if folder and Path(folder).is_relative_to(source):
        raise PlanError(
            f"--output {folder} is inside the shoot folder {source}; give a folder outside it "
            "(or leave out --output: the outputs then go into the shoot folder's edited/ and "
            "exported/)"
        )


async def _check_ready(
    store: Store,
    planned: Sequence[_Planned],
    existing: Iterable[Job],
    ready: ReadyCheck | None,
    spec_model: type[JobSpec],
) -> None:
    """NotReady with every problem, if the output folders cannot take what the shoot's jobs
    (`planned`: to be made; `existing`: to resume) will bring back, or the services they use
    (`ready`) cannot serve them."""
    demands: list[Demand] = []
    needs: list[Need] = []
    for new in planned:
        demands.append(Demand(new.spec, len(new.photos)))
        needs += job_needs(
            image_type=new.kind,
            spec=new.spec,
            source=new.source,
            edited=new.edited,
            exported=new.exported,
            to_edit=[(p.file_name, p.size) for p in new.photos],
            to_export=[p.size for p in new.photos],
            to_deliver=len(new.photos),
        )
    for job in existing:
        if job.state in FINISHED:
            continue
        spec = spec_model.from_stored(job.options)
        records = await store.photos(job.id)
        done = {
            phase: sum(1 for p in records if p.done(phase))
            for phase in ("edit", "export", "tag", "deliver")
        }
        demands.append(Demand(spec, len(records), done))
        needs += job_needs(
            image_type=ImageType(job.image_type),
            spec=spec,
            source=Path(job.source),
            edited=Path(job.edited_dir),
            exported=Path(job.exported_dir),
            to_edit=[(p.file_name, p.size) for p in records if not p.done("edit")],
            to_export=[p.size for p in records if not p.done("export")],
            to_deliver=len(records) - done["deliver"],
        )
    problems = await ready(demands) if ready is not None else []
    problems += await asyncio.to_thread(room_refusals, needs)
    if problems:
        raise NotReady(problems)


def _with_layout(spec: JobSpec) -> JobSpec:
    """The spec a new job is stored with: the default output layout unless one was chosen."""
    return spec if spec.outputs else spec.model_copy(update={"outputs": OutputLayout()})
