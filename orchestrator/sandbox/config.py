"""What a sandbox serves and how badly it behaves: settings, fault specs and default profiles.

Default profiles (stable keys, so demos and tests can name them):

| key  | name             | type     | image type |
|------|------------------|----------|------------|
| 1001 | LOVE & LIGHT     | Talent   | RAW        |
| 1002 | Clean Portrait   | Personal | RAW        |
| 2001 | LOVE & LIGHT JPG | Talent   | JPG        |
| 2002 | Bright Airy      | Personal | JPG        |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FAULT_NAMES = (
    "error_5xx",
    "throttle_429",
    "reset",
    "slow",
    "expire_link",
    "lose_callback",
    "duplicate_callback",
    "reorder_callback",
)


@dataclass(frozen=True, kw_only=True)
class Profile:
    """One editing profile as `GET /v1/profiles` lists it."""

    key: int
    name: str
    profile_type: str  # "Personal" or "Talent"
    image_type: str  # "RAW" or "JPG"


DEFAULT_PROFILES: tuple[Profile, ...] = (
    Profile(key=1001, name="LOVE & LIGHT", profile_type="Talent", image_type="RAW"),
    Profile(key=1002, name="Clean Portrait", profile_type="Personal", image_type="RAW"),
    Profile(key=2001, name="LOVE & LIGHT JPG", profile_type="Talent", image_type="JPG"),
    Profile(key=2002, name="Bright Airy", profile_type="Personal", image_type="JPG"),
)


def parse_faults(spec: str) -> dict[str, float]:
    """Turn a `--faults` spec like "error_5xx=0.1,slow=0.05" into {name: probability}."""
    faults: dict[str, float] = {}
    for raw_item in spec.split(","):
        item = raw_item.strip()
        if not item:
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise ValueError(f"fault {item!r} needs a probability, e.g. {item}=0.1")
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(FAULT_NAMES)}")
        if name in faults:
            raise ValueError(f"fault {name!r} is given twice")
        faults[name] = _probability(name, value)
    return faults


def check_faults(faults: Mapping[str, float]) -> dict[str, float]:
    """`faults` as a plain dict if every name is known and every probability in 0..1."""
    checked = {}
    for name, probability in faults.items():
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(FAULT_NAMES)}")
        checked[name] = _probability(name, str(probability))
    return checked


def _probability(name: str, value: str) -> float:
    try:
        probability = float(value)
    except ValueError:
        raise ValueError(f"fault {name!r}: {value!r} is not a number") from None
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        raise ValueError(f"fault {name!r}: probability must be between 0 and 1, got {value}")
    return probability


@dataclass(frozen=True, kw_only=True)
class SandboxConfig:
    """Everything a sandbox needs to start; validated on construction."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 lets the OS pick a free port
    edit_seconds: float = 5.0  # how long an edit takes; an export takes the same
    faults: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    api_key: str | None = None  # None: any non-empty x-api-key is accepted
    link_ttl_seconds: float = 3600.0
    slow_seconds: float = 1.0
    data_dir: Path | None = None  # None: a temporary folder removed on close
    profiles: tuple[Profile, ...] = DEFAULT_PROFILES
    imgix_rate_scale: float = 1.0  # imgix's per-endpoint limits, times this

    def __post_init__(self) -> None:
        check_faults(self.faults)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        for label, seconds in (
            ("edit_seconds", self.edit_seconds),
            ("slow_seconds", self.slow_seconds),
        ):
            if not (math.isfinite(seconds) and seconds >= 0):
                raise ValueError(f"{label} must be a non-negative number, got {seconds}")
        if not (math.isfinite(self.imgix_rate_scale) and self.imgix_rate_scale > 0):
            raise ValueError(f"imgix_rate_scale must be positive, got {self.imgix_rate_scale}")
        if not (math.isfinite(self.link_ttl_seconds) and self.link_ttl_seconds > 0):
            raise ValueError(f"link_ttl_seconds must be positive, got {self.link_ttl_seconds}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key, when pinned, must not be empty")
        keys = [profile.key for profile in self.profiles]
        if len(set(keys)) != len(keys):
            raise ValueError("profile keys must be unique")
