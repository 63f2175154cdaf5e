"""The pure rules of the analyses: which colours become keywords and where in the hierarchy,
the focal point from Imagga's croppings, the crop boxes asked for, face regions turned back to
the stored pixels under each EXIF orientation, people's labels, stored details read leniently."""

from __future__ import annotations

import pytest

from orchestrator.integrations.keywords import FaceArea
from orchestrator.spec import TagSpec
from orchestrator.workflow.analyses import crop_sizes, focal_point
from orchestrator.workflow.people import labels
from orchestrator.workflow.tag_details import TagDetails


def test_colours_of_a_fair_share_become_words_under_colors_and_people_under_people() -> None:
    details = TagDetails.model_validate(
        {
            "keywords": ["beach"],
            "colors": [
                {"hex": "#be828c", "percent": 40.0, "name": "dusty rose"},
                {"hex": "#1e286e", "percent": 30.0, "name": "navy blue"},
                {"hex": "#be828d", "percent": 20.0, "name": "dusty rose"},
                {"hex": "#f5f5f5", "percent": 4.9, "name": "white"},
                {"hex": 12, "percent": "x"},  # malformed: left out
            ],
            "faces": [
                {"x": 0.5, "y": 0.5, "w": 0.1, "h": 0.1, "person": "1", "name": "Anna"},
                {"x": 0.2, "y": 0.5, "w": 0.1, "h": 0.1, "person": "2"},
                {"x": 0.7, "y": 0.5, "w": 0.1, "h": 0.1, "person": "3", "name": "B|o"},
            ],
        }
    )
    assert len(details.colors or ()) == 4
    assert details.color_words == ["Dusty rose", "Navy blue"]
    assert details.people == ["Anna", "B|o"]
    assert details.analysis_words == ["Dusty rose", "Navy blue", "Anna", "B|o"]
    assert details.analysis_paths == [
        "Colors|Dusty rose",
        "Colors|Navy blue",
        "People|Anna",
        "People|B o",
    ]
    assert details.stored()["colors"][0] == {
        "hex": "#be828c",
        "percent": 40.0,
        "name": "dusty rose",
    }


def test_details_of_older_releases_have_no_analyses_and_store_none() -> None:
    details = TagDetails.model_validate({"keywords": ["sea"], "focal_point": {"x": 3, "y": 0.5}})
    assert (details.colors, details.faces, details.focal_point) == (None, None, None)
    assert details.analysis_words == [] and details.analysis_paths == []
    assert not {"colors", "faces", "focal_point"} & set(details.stored())


def test_the_focal_point_takes_across_from_the_narrowest_crop_and_down_from_the_shortest() -> None:
    crops = [
        {"x1": 100, "y1": 0, "x2": 500, "y2": 400},  # 1:1 of a 600x400 picture
        {"x1": 300, "y1": 0, "x2": 525, "y2": 400},  # 9:16: the narrowest
        {"x1": 0, "y1": 50, "x2": 600, "y2": 250},  # a wide one: the shortest
    ]
    point = focal_point(crops, 600, 400)
    assert point is not None
    assert (point.x, point.y) == (pytest.approx(0.6875), pytest.approx(0.375))
    assert focal_point([], 600, 400) is None


def test_each_crop_asked_is_the_largest_box_of_its_ratio_inside_the_picture() -> None:
    assert crop_sizes(600, 400) == [(400, 400), (320, 400), (225, 400)]
    assert crop_sizes(400, 1000) == [(400, 400), (400, 500), (400, 711)]


@pytest.mark.parametrize(
    ("orientation", "stored"),
    [
        (1, (0.2, 0.3, 0.1, 0.2)),
        (2, (0.8, 0.3, 0.1, 0.2)),
        (3, (0.8, 0.7, 0.1, 0.2)),
        (4, (0.2, 0.7, 0.1, 0.2)),
        (5, (0.3, 0.2, 0.2, 0.1)),
        (6, (0.3, 0.8, 0.2, 0.1)),
        (7, (0.7, 0.8, 0.2, 0.1)),
        (8, (0.7, 0.2, 0.2, 0.1)),
    ],
)
def test_a_face_region_lies_in_the_pixels_as_stored_under_each_orientation(
    orientation: int, stored: tuple[float, float, float, float]
) -> None:
    area = FaceArea(0.2, 0.3, 0.1, 0.2, "Anna").region(orientation)["Area"]
    assert (area["X"], area["Y"], area["W"], area["H"]) == pytest.approx(stored)


def test_people_are_numbered_by_their_first_face_in_the_shoot_alone_ones_included() -> None:
    faces = ["f1", "f2", "f3", "f4", "f5"]
    found = labels(faces, [["f5", "f2"], ["f3", "f4"], ["gone"]])
    assert found == {"f1": "1", "f2": "2", "f5": "2", "f3": "3", "f4": "3"}


def test_every_analysis_is_one_more_request_a_photo_and_people_need_the_faces() -> None:
    assert TagSpec().analyses_per_photo == 1
    assert TagSpec(colors=True, smart_crops=True).analyses_per_photo == 3
    people = TagSpec(people=True)
    assert people.wants_faces and people.analyses_per_photo == 2
    assert TagSpec(faces=True, people=True).analyses_per_photo == 2
