"""The job's own bookkeeping: which names are images, which Spark hides, how a path is made
literal, and the check that every listed image is accounted for (its Spark side:
test_featurize_paths_in_spark.py)."""

from __future__ import annotations

import pytest

from accounting import EMPTY_FILE_ERROR, TOO_LARGE_ERROR, account_for, unread_reason
from image_reading import (
    HIDDEN_NAME_ERROR,
    MAX_FILE_BYTES,
    hidden_from_spark,
    is_image_name,
    literal_path,
)

pytestmark = pytest.mark.unit

# Names a phone app, a camera or a person can give an S3 object (any UTF-8).
ODD_NAMES = [
    "12:30:00.jpg",
    "sp ace.jpg",
    "q?.jpg",
    "h#.jpg",
    "pc%20.jpg",
    "pct%.jpg",
    "br[1].jpg",
    "cb{a,b}.jpg",
    "st*.jpg",
    "back\\slash.jpg",
    "apo'.jpg",
    "日本の桃.jpg",
    "pêche mûre n°1.jpeg",
    "🍎.png",
    "a=b.jpg",
    "semi;colon&amp.jpg",
    "tab\tname.jpg",
    "new\nline.jpg",
]


@pytest.mark.parametrize(
    ("path", "image"),
    [
        ("s3://lake/in/a.jpg", True),
        ("s3://lake/in/a.JpEg", True),
        ("s3://lake/in/a.PNG", True),
        ("s3://lake/in/.jpg", True),  # a name that is only an extension is still one
        ("s3://lake/in/a.jpg.txt", False),
        ("s3://lake/in/a.heic", False),
        ("s3://lake/in/jpg", False),
        ("s3://lake/in.jpg/a", False),  # the folder's name does not count
        ("s3://lake/in/a.jpꞡ", False),
    ],
)
def test_image_names_go_by_the_extension_in_any_case(path, image):
    assert is_image_name(path) is image


@pytest.mark.parametrize(
    ("path", "hidden"),
    [
        ("s3://lake/in/_DSC0001.JPG", True),  # cameras' Adobe RGB photos
        ("s3://lake/in/._DSC0001.JPG", True),  # macOS AppleDouble
        ("s3://lake/in/.jpg", True),
        ("s3://lake/in/_a=b.jpg", False),  # Spark's partition-folder exception
        ("s3://lake/_tmp/a.jpg", False),  # only the file's own name counts here
        ("s3://lake/in/a_.jpg", False),
    ],
)
def test_names_spark_hides(path, hidden):
    assert hidden_from_spark(path) is hidden


def unexpected_call():
    raise AssertionError("called although the counts add up")


def test_counts_that_add_up_need_no_paths():
    listed = ["s3://l/a.jpg", "s3://l/b.jpg", "s3://l/_c.jpg"]
    quarantined = {"s3://l/_c.jpg": HIDDEN_NAME_ERROR}
    accounting = account_for(listed, 2, quarantined, unexpected_call, unexpected_call)
    assert (accounting.quarantined, accounting.missing, accounting.unexpected) == ({}, [], [])


def test_a_listed_image_with_no_row_gets_the_drivers_reason():
    listed = ["s3://l/a.jpg", "s3://l/zero.jpg", "s3://l/gone.jpg"]
    reasons = {"s3://l/zero.jpg": EMPTY_FILE_ERROR, "s3://l/gone.jpg": "cannot be read: x"}
    accounting = account_for(listed, 1, {}, lambda: ["s3://l/a.jpg"], reasons.get)
    assert accounting.quarantined == reasons
    assert accounting.missing == [] and accounting.unexpected == []


def test_a_listed_image_that_reads_fine_but_gave_no_row_is_missing():
    listed = ["s3://l/a.jpg", "s3://l/b.jpg"]
    accounting = account_for(listed, 1, {}, lambda: ["s3://l/a.jpg"], lambda path: None)
    assert accounting.missing == ["s3://l/b.jpg"] and accounting.quarantined == {}


def test_rows_that_were_not_listed_or_came_twice_are_unexpected():
    listed = ["s3://l/a.jpg", "s3://l/b.jpg"]
    featurized = ["s3://l/a.jpg", "s3://l/a.jpg", "s3://l/new.jpg"]
    accounting = account_for(listed, 3, {}, lambda: featurized, lambda path: None)
    assert accounting.unexpected == ["s3://l/a.jpg", "s3://l/new.jpg"]
    assert accounting.missing == ["s3://l/b.jpg"]


def test_an_unlisted_quarantine_row_is_unexpected_even_when_the_counts_add_up():
    listed = ["s3://l/a.jpg", "s3://l/b.jpg"]
    quarantined = {"s3://l/other.jpg": "x"}
    accounting = account_for(listed, 1, quarantined, lambda: ["s3://l/a.jpg"], lambda path: None)
    assert accounting.unexpected == ["s3://l/other.jpg"]
    assert accounting.missing == ["s3://l/b.jpg"]


@pytest.mark.parametrize(
    ("length", "reason"), [(0, EMPTY_FILE_ERROR), (MAX_FILE_BYTES + 1, TOO_LARGE_ERROR), (9, None)]
)
def test_why_a_listed_image_gave_no_row(length, reason):
    assert unread_reason("s3://l/a.jpg", lambda path: length) == reason


def test_a_listed_image_the_driver_cannot_open_gets_hadoops_reason():
    def probe(path: str) -> int:
        raise OSError(f"FileNotFoundException: File {path} does not exist")

    assert unread_reason("s3://l/a.jpg", probe) == (
        "cannot be read: FileNotFoundException: File s3://l/a.jpg does not exist"
    )


def test_literal_paths():
    assert literal_path("s3://l/a[1]{x}*?\\.jpg") == "s3://l/a\\[1\\]\\{x\\}\\*\\?\\\\.jpg"
    assert literal_path("file:/in/12:00.jpg") == "file:/in/12:00.jpg"
