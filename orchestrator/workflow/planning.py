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
from orchestrator.store.queries import Lease, NewJob, NewPhoto, RecordedPhoto, Store
from orchestrator.transfer.hashing import file_md5
from orchestrator.words import plural
from orchestrator.workflow.lease import borrow
from orchestrator.workflow.outputs import Need, job_needs, new_job_folders, room_refusals
from orchestrator.workflow.picks import (
    NOT_PICKED,
    Unpicked,
    picked,
    record_kept_back,
    shoot_min_rating,
)
from orchestrator.workflow.shoot import (
    PREFIX_OPTION,
    FoundPhoto,
    RefusedFile,
    match_renamed,
    scan_shoot,
)
from orchestrator.workflow.shoot_record import RECORD, RecordedJob, add_job, read_record
from orchestrator.workflow.stage import Demand
from orchestrator.workflow.tag import kind_refusal
from orchestrator.workflow.upload import ADDED_LATE, REFUSED

if TYPE_CHECKING:
    from orchestrator.imagen.client import ImagenClient

NOT_UPLOADED_YET = frozenset({JobState.QUEUED, JobState.PROJECT_CREATED, JobState.UPLOADING})
"""States in which photos found later can still join the job (and changed ones be re-sent)."""

SHOWN_NAMES = 5
"""Photos named in one note before the rest are summed up as "…"."""
SHOWN_REFUSED = 20
"""Refused files listed one per note, each with its reason, before the rest are counted."""
PLANNER_LEASE_SECONDS = 30.0
"""How long adding new photos to a job may hold its lease without renewing it."""


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

FINISHED = frozenset({JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED})
"""States of a job that planning hands back without it bringing anything more back."""


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
        found, kept_back = await picked(scan.photos, set(known), min_rating)
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
        _check_exiftool("--keyword writes the shoot's words into its photos")
    await _check_ready(store, [*fresh, *follow_ups], existing.values(), ready)
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
        plan.notes += await _sync_photos(
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
            f"({_names(p.rel_path for p in planned.photos)}) join the shoot in this follow-up "
            "job, with the shoot's options"
        )
    plan.jobs += made.values()
    for kind, job in existing.items():
        if kind not in scan.photos:
            plan.notes.append(f"{job.name}: no {kind.value} photos are left in the folder")
    plan.notes += await record_kept_back(store, plan.jobs, kept_back, min_rating)
    await _record_refused(store, plan.jobs, scan.refused)
    return plan


async def look_again(store: Store, request: RunRequest, jobs: Sequence[Job]) -> list[str]:
    """After a run drove `jobs`: the photos that landed in the folder meanwhile, after their
    job's upload, named in its history as added late (`run --add` sends them); the notes
    that say so. Nothing is made or sent."""
    source = request.source.resolve()
    current = [await store.get_job(job.id) for job in jobs]
    recorded = {job.id: await store.recorded_photos(job.id) for job in current}
    known = {p.rel_path: (p.size, p.mtime_ns) for photos in recorded.values() for p in photos}
    scan = await asyncio.to_thread(
        functools.partial(
            scan_shoot, source, prefix_subfolders=request.prefix_subfolders, known=known
        )
    )
    kept_back = {
        str(entry.get("path"))
        for events in (await store.events_of_kinds([j.id for j in current], (NOT_PICKED,))).values()
        for event in events
        for entry in (event.data or {}).get("photos", [])
        if isinstance(entry, dict)
    }
    notes: list[str] = []
    for kind, every in scan.photos.items():
        found = [p for p in every if p.rel_path not in kept_back]  # --min-rating's choice
        of_kind = sorted(
            (job for job in current if job.image_type == kind.value),
            key=lambda job: job.created_at,
            reverse=True,
        )
        if of_kind:
            told = {
                str(path)
                for event in await store.events(of_kind[0].id)
                if event.kind == ADDED_LATE and event.data
                for path in event.data.get("photos", [])
            }
            news = [p for p in found if p.rel_path not in told]  # said before the run
            notes += await _sync_photos(store, of_kind, recorded, news, follow_up=False)
        else:
            notes.append(
                f"{plural(len(found), f'{kind.value} photo')} came into the folder during the "
                "run; run it again (with a --profile for them) to edit them"
            )
    return notes


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
    spec = JobSpec.from_stored(latest.options)
    if request.spec.min_rating is not None:
        spec = spec.model_copy(update={"min_rating": request.spec.min_rating})
    taken = {Path(path).stem.lower() for path in known}
    clashing = [p for p in late if Path(p.file_name).stem.lower() in taken]
    if clashing:
        raise PlanError(
            f"{latest.name}: new photos {_names(p.rel_path for p in clashing)} have the same "
            "name as photos the shoot sent already; rename them (or run with "
            f"{PREFIX_OPTION} from the start) so their outputs do not meet"
        )
    return _Planned(
        kind, late, spec, Path(first.edited_dir), Path(first.exported_dir), Path(first.source)
    )


def _check_exiftool(why: str) -> None:
    """PlanError, before anything is sent, if exiftool cannot be run."""
    from orchestrator.integrations.keywords import ExiftoolMissing, KeywordFiles

    try:
        KeywordFiles().check()
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
                + _names(str(f) for f in new),
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
        [_new_photo(p) for p in planned.photos],
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
        spec = JobSpec.from_stored(job.options)
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


def _new_photo(photo: FoundPhoto) -> NewPhoto:
    return NewPhoto(photo.rel_path, photo.file_name, photo.size, photo.mtime_ns)


async def _sync_photos(
    store: Store,
    jobs: list[Job],
    recorded: Mapping[str, list[RecordedPhoto]],
    found: list[FoundPhoto],
    *,
    follow_up: bool,
) -> list[str]:
    """Compare the folder with the photos of one image type's jobs of the shoot (newest
    first): report what changed, let new photos join the latest job if in time.

    Until every photo is uploaded, new photos join the job and the upload stage sends changed
    ones again. After that, Imagen edits the versions it has: changes are only reported, and
    new photos wait for a follow-up job (`follow_up`: made by the caller now; else they are
    named in the job's history as added late).
    """
    job = jobs[0]
    notes: list[str] = []
    for each in jobs:
        if _past_upload(each) or (follow_up and each.state == JobState.COMPLETED):
            mine = {p.rel_path for p in recorded[each.id]}
            notes += await _report_late_changes(
                store, each, recorded[each.id], [p for p in found if p.rel_path in mine]
            )
    photos = recorded[job.id]
    held = {p.rel_path for each in jobs for p in recorded[each.id]}
    added = [p for p in found if p.rel_path not in held]
    if not added:
        return notes
    if job.state in NOT_UPLOADED_YET:
        taken = {Path(p.file_name).stem.lower() for p in photos}
        clashing = [p for p in added if Path(p.file_name).stem.lower() in taken]
        if clashing:
            names = ", ".join(p.rel_path for p in clashing[:5])
            raise PlanError(
                f"{job.name}: new photos {names} have the same name as photos already "
                "in the job; rename them or move them to another shoot"
            )
        async with borrow(store, job.id, purpose="planner", ttl=PLANNER_LEASE_SECONDS) as lease:
            renamed = await _follow_renames(store, lease, job, found, added)
            added = [p for p in added if p.rel_path not in renamed]
            if added:
                await store.add_photos(lease, [_new_photo(p) for p in added])
        notes += [
            f"{job.name}: {old} was renamed to {new}; it stays in the job"
            for new, old in renamed.items()
        ]
        if not added:
            return notes
        await store.add_event(job.id, "source", f"{plural(len(added), 'new photo')} joined the job")
        return [*notes, f"{job.name}: {plural(len(added), 'new photo')} found; they join the job"]
    if follow_up:
        return notes
    reported = {
        str(path)
        for event in await store.events(job.id)
        if event.kind == ADDED_LATE and event.data
        for path in event.data.get("photos", [])
    }
    unreported = [p.rel_path for p in added if p.rel_path not in reported]
    if unreported:
        await store.add_event(
            job.id,
            ADDED_LATE,
            f"{plural(len(unreported), 'photo')} added after the upload "
            f"({_names(unreported)}): not part of this job; `run FOLDER --add` sends them "
            "in a follow-up job",
            data={"photos": unreported},
        )
    return [
        *notes,
        f"{job.name}: {plural(len(added), 'photo')} added after the upload "
        f"({_names(p.rel_path for p in added)}); they are not part of this job: run the "
        "folder again with --add to send them in a follow-up job of the same shoot",
    ]


async def _follow_renames(
    store: Store, lease: Lease, job: Job, found: list[FoundPhoto], added: list[FoundPhoto]
) -> dict[str, str]:
    """Record photos renamed in the folder before their upload under their new names; the
    old name of each, by its new one."""
    here = {p.rel_path for p in found}
    missing = [p for p in await store.photos(job.id) if p.rel_path not in here]
    renamed: dict[str, str] = {}
    for old, new in match_renamed([p for p in missing if not p.done("upload")], added):
        await store.rename_photo(lease, old.id, new.rel_path, new.file_name)
        await store.add_event(
            job.id, "source", f"{old.rel_path} was renamed to {new.rel_path}; it stays in the job"
        )
        renamed[new.rel_path] = old.rel_path
    return renamed


def _past_upload(job: Job) -> bool:
    """Whether the job's photos are all at Imagen and the job still has work to do."""
    state = job.state
    if state == JobState.FAILED and job.state_before_failure:
        state = job.state_before_failure
    return state not in NOT_UPLOADED_YET | {JobState.COMPLETED, JobState.CANCELLED, JobState.FAILED}


async def _report_late_changes(
    store: Store, job: Job, photos: list[RecordedPhoto], found: list[FoundPhoto]
) -> list[str]:
    """Notes (and history) for photos changed or removed after they were uploaded (of a job
    that ended: changed ones only, each once; they are never sent again).

    A photo whose mtime moved but whose size did not is hashed: touching is not changing.
    """
    ended = job.state in FINISHED
    now = {p.rel_path: p for p in found}
    changed: list[str] = []
    removed: list[str] = []
    for photo in photos:
        current = now.get(photo.rel_path)
        if current is None:
            if not ended:
                removed.append(photo.rel_path)
        elif (current.size, current.mtime_ns) != (photo.size, photo.mtime_ns) and not (
            current.size == photo.size
            and photo.md5
            and (await file_md5(current.path)).hex() == photo.md5
        ):
            changed.append(photo.rel_path)
    if ended:
        told = {
            str(path)
            for event in await store.events(job.id)
            if event.kind == "source" and event.data
            for path in event.data.get("changed", [])
        }
        changed = [path for path in changed if path not in told]
    notes: list[str] = []
    if changed:
        message = (
            f"{plural(len(changed), 'photo')} changed after the upload "
            f"({_names(changed)}); Imagen edits the versions it was sent, and they are not "
            "sent again. To edit the new versions, put them in a new folder and run that"
        )
        await store.add_event(job.id, "source", message, data={"changed": changed})
        notes.append(f"{job.name}: {message}")
    if removed:
        message = (
            f"{plural(len(removed), 'photo')} removed from the folder after the upload "
            f"({_names(removed)}); Imagen has them, so their edits still "
            "arrive"
        )
        await store.add_event(job.id, "source", message, data={"removed": removed})
        notes.append(f"{job.name}: {message}")
    return notes


def _names(paths: Iterable[str]) -> str:
    listed = list(paths)
    return ", ".join(listed[:SHOWN_NAMES]) + (" …" if len(listed) > SHOWN_NAMES else "")
