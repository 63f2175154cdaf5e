"""What the fake Imagga answers about an image, from what its vision read in the pixels:
categories, colours, faces with their ids, croppings, faces grouped into persons, and the
persons of a recognition index. Pure functions of a reading (and the image's seed); `imagga.py`
and `imagga_recognition.py` serve them with the limits."""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

from orchestrator.sandbox import vision

CATEGORIZERS: dict[str, tuple[str, ...]] = {
    "personal_photos": (
        "people portraits", "events parties", "nature landscape", "streetview architecture",
        "interior objects", "food drinks", "pets animals", "sunrises sunsets",
    ),
    "nsfw_beta": ("safe", "underwear", "nsfw"),
}  # fmt: skip
GROUPING_HUE_DEGREES = 30.0
"""Faces whose signature hues are this close are one person."""


def categories_for(
    seed_hex: str, reading: vision.Reading, categorizer: str
) -> list[tuple[str, float]]:
    """(category, confidence) pairs for an image, highest first, summing to about 100."""
    if categorizer == "personal_photos":
        return list(reading.personal_photos)
    rng = random.Random(f"{categorizer}:{seed_hex}")
    names = CATEGORIZERS[categorizer]
    if categorizer == "nsfw_beta":
        # Most images are safe; about one in eight is not.
        unsafe = rng.random() < 0.125
        top = rng.uniform(70.0, 99.0)
        first = rng.choice(names[1:]) if unsafe else "safe"
        rest = [n for n in names if n != first]
        second = round((100 - top) * rng.uniform(0.5, 1.0), 4)
        return [(first, round(top, 4)), (rest[0], second), (rest[1], round(100 - top - second, 4))]
    weights = [rng.random() ** 3 for _ in names]
    total = sum(weights)
    scored = sorted(
        ((name, round(100 * w / total, 4)) for name, w in zip(names, weights, strict=True)),
        key=lambda pair: -pair[1],
    )
    return [pair for pair in scored if pair[1] >= 1.0]


def colour_answer(colour: tuple[int, int, int], percent: float) -> dict[str, Any]:
    """One colour as Imagga describes it, with its closest named colour."""
    name, parent, named_rgb, distance = vision.closest_named(colour)
    red, green, blue = colour
    return {
        "r": red,
        "g": green,
        "b": blue,
        "html_code": f"#{red:02x}{green:02x}{blue:02x}",
        "closest_palette_color": name,
        "closest_palette_color_html_code": "#{:02x}{:02x}{:02x}".format(*named_rgb),
        "closest_palette_color_parent": parent,
        "closest_palette_distance": distance,
        "percent": percent,
    }


def colors_result(reading: vision.Reading) -> dict[str, Any]:
    """`/colors`' answer."""
    foreground = sum(percent for _, percent in reading.foreground_colors)
    return {
        "colors": {
            "image_colors": [colour_answer(c, p) for c, p in reading.image_colors],
            "foreground_colors": [colour_answer(c, p) for c, p in reading.foreground_colors],
            "background_colors": [colour_answer(c, p) for c, p in reading.background_colors],
            "color_percent_threshold": 1.75,
            "color_variance": len(reading.image_colors) * 7,
            "object_percentage": round(foreground / 4, 2),
        }
    }


def face_id_of(seed: str, index: int) -> str:
    """The id of the image's `index`th face: stable for the image."""
    return hashlib.md5(f"face:{seed}:{index}".encode()).hexdigest()


def faces_result(
    known: dict[str, float], seed: str, reading: vision.Reading, *, face_ids: bool
) -> dict[str, Any]:
    """`/faces/detections`' answer; with `face_ids`, each face's id (its hue kept in `known`
    for the groupings)."""
    faces = []
    for index, face in enumerate(reading.faces):
        x1, y1, x2, y2 = face.box
        answer: dict[str, Any] = {
            "confidence": face.confidence,
            "coordinates": {
                "xmin": x1,
                "ymin": y1,
                "xmax": x2,
                "ymax": y2,
                "width": x2 - x1,
                "height": y2 - y1,
            },
            "landmarks": [],
        }
        if face_ids:
            face_id = face_id_of(seed, index)
            known[face_id] = face.hue
            answer["face_id"] = face_id
        faces.append(answer)
    return {"faces": faces}


def croppings_result(reading: vision.Reading, sizes: list[tuple[int, int]]) -> dict[str, Any]:
    """`/croppings`' answer for the sizes asked for."""
    croppings = []
    for width, height in sizes:
        x1, y1, x2, y2 = vision.cropping(reading, width, height)
        croppings.append(
            {"target_width": width, "target_height": height, "x1": x1, "y1": y1, "x2": x2, "y2": y2}
        )
    return {"croppings": croppings}


def group_faces(hues: dict[str, float]) -> list[list[str]]:
    """Faces in groups of one person each: hues within GROUPING_HUE_DEGREES, chained."""
    groups: list[list[str]] = []
    signatures: list[list[float]] = []
    for face_id, hue in hues.items():
        for group, members in zip(groups, signatures, strict=True):
            if any(
                min(abs(hue - other), 360 - abs(hue - other)) < GROUPING_HUE_DEGREES
                for other in members
            ):
                group.append(face_id)
                members.append(hue)
                break
        else:
            groups.append([face_id])
            signatures.append([hue])
    return groups


RECOGNITION_SCORE_DEGREES = 2 * GROUPING_HUE_DEGREES
"""A face's score against a person falls from 1 (same hue) to 0 at this hue distance, so that
a score above 0.5 is what the groupings would call the same person."""


@dataclass
class RecognitionIndex:
    """A face recognition index: persons fed with face ids, recognised once trained."""

    fed: dict[str, dict[str, float]] = field(default_factory=dict)
    """Each person's face ids (and their hues) as fed; used from the next training on."""
    trained: dict[str, dict[str, float]] = field(default_factory=dict)
    """What the last finished training learnt: the persons a lookup can find."""
    pending: list[tuple[float, dict[str, dict[str, float]]]] = field(default_factory=list)
    """Trainings under way: (ready at, monotonic; what they learn)."""

    def settle(self, now: float) -> None:
        """Take in every training finished by `now`."""
        for ready_at, learnt in [item for item in self.pending if item[0] <= now]:
            self.trained = learnt
            self.pending.remove((ready_at, learnt))

    def ledger(self) -> dict[str, Any]:
        """As the ledger shows it: each person's face count, fed and trained (so far)."""
        self.settle(time.monotonic())
        return {
            "fed": {person: len(faces) for person, faces in self.fed.items()},
            "trained": {person: len(faces) for person, faces in self.trained.items()},
        }


def recognised(index: RecognitionIndex, hue: float, count: int) -> list[dict[str, Any]]:
    """The trained persons whose faces look like a face of this hue, best score first."""
    scores: list[tuple[float, str]] = []
    for person, faces in index.trained.items():
        distance = min(min(abs(hue - h), 360 - abs(hue - h)) for h in faces.values())
        score = round(max(0.0, 1 - distance / RECOGNITION_SCORE_DEGREES), 4)
        if score > 0:
            scores.append((-score, person))
    return [{"id": person, "score": -score} for score, person in sorted(scores)[:count]]
