"""Where delivered photos go: origin path templates and their checks, the paths made from them,
and the delivery domain. Pure rules: the job spec checks its template here, the settings their
domain, and delivery makes each photo's path.
"""

from __future__ import annotations

import string
import unicodedata

from imgix import UrlBuilder

DEFAULT_TEMPLATE = "{shoot}/{path}"
"""The shoot's name, then the photo's place in the shoot (`Ceremony/Card 1/DSC_1000.JPG`)."""
LEGACY_TEMPLATE = "{job_name}/{file_name}"
"""The default of jobs made before shoots, which stored none: their paths stay as they were."""
TEMPLATE_FIELDS = ("shoot", "path", "job_name", "job_id", "file_name", "stem")
"""What an origin path template may name: the shoot's name, the photo's path in the shoot
(its folders, its own name and letter case, the export's extension for a RAW), the job's
name and id, the exported file's name, and that name without its extension."""
NESTED_FIELDS = frozenset({"path"})
"""Fields whose value may hold folders (`/`), each of them checked."""
MAX_ORIGIN_PATH = 1024


class PathRefused(ValueError):
    """An origin path template, or a path made from it, that could leave its prefix or that
    imgix could not hold; the message says why."""


def check_template(template: str) -> str:
    """The template, if it names only known fields and stays inside its prefix."""
    if not template or template != template.strip():
        raise PathRefused("the path template is empty or starts or ends with a space")
    if template.startswith("/") or "\\" in template:
        raise PathRefused(
            f"the path template {template!r} must be relative, with / between folders "
            "(e.g. {job_name}/{file_name})"
        )
    _refuse_control(template, "the path template")
    named: set[str] = set()
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PathRefused(f"the path template {template!r} is malformed: {exc}") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS or spec or conversion:
            raise PathRefused(
                f"the path template names {{{field}}}; it may name only "
                + ", ".join(f"{{{name}}}" for name in TEMPLATE_FIELDS)
            )
        named.add(field)
    if not named & {"file_name", "stem", "path"}:
        raise PathRefused(
            "the path template must name {file_name}, {stem} or {path}, or every photo "
            "would go to the same path"
        )
    for segment in template.split("/"):
        if segment in ("", ".", ".."):
            raise PathRefused(
                f"the path template {template!r} has an empty, '.' or '..' folder; "
                "it must stay inside its prefix"
            )
    return template


def template_prefix(template: str) -> str:
    """The fixed folders at the start of a template: every path made from it lies below."""
    literal = template.split("{", 1)[0]
    return literal.rpartition("/")[0] + "/" if "/" in literal else ""


def origin_path(template: str, **values: str) -> str:
    """The origin path for one photo: the template filled with `values`, checked.

    Each value fills part of one folder or file name (`path`: folders and a name): a value
    holding a slash (elsewhere), a control character, or that is (or has a folder that is)
    empty, '.' or '..' is refused, and so is any result outside the prefix.
    """
    check_template(template)
    for name, value in values.items():
        parts = value.split("/") if name in NESTED_FIELDS else [value]
        if any(not part or part in (".", "..") or "/" in part for part in parts) or ("\\" in value):
            raise PathRefused(f"{name} {value!r} cannot be part of an origin path")
        _refuse_control(value, name)
    path = unicodedata.normalize("NFC", template.format(**values))
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise PathRefused(f"the origin path {path!r} has an empty, '.' or '..' folder")
    if not path.startswith(template_prefix(template)):
        raise PathRefused(f"the origin path {path!r} leaves the prefix of {template!r}")
    if len(path.encode()) > MAX_ORIGIN_PATH:
        raise PathRefused(f"the origin path {path[:80]!r}… is longer than imgix takes")
    return path


def _refuse_control(text: str, what: str) -> None:
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in text):
        raise PathRefused(f"{what} holds a control character")


def check_domain(domain: str) -> str:
    """An imgix delivery domain (e.g. studio.imgix.net), as the imgix library accepts it."""
    try:
        UrlBuilder(domain)
    except ValueError:
        raise ValueError(
            f"{domain!r} is not a delivery domain: give the host name only, like "
            "studio.imgix.net (no https://, no path)"
        ) from None
    return domain
