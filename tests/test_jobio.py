import os
from pathlib import Path

import pytest

import jobio

pytestmark = pytest.mark.spark


def test_bytes_and_json_round_trip_through_hadoop_fs(spark, tmp_path):
    uri = jobio.qualify(str(tmp_path / "a" / "b.bin"))
    payload = bytes(range(256)) * 5000  # 1.3 MB, every byte value
    jobio.write_bytes(spark, uri, payload)
    assert jobio.exists(spark, uri)
    assert jobio.read_bytes(spark, uri) == payload

    doc_uri = jobio.join(jobio.qualify(str(tmp_path)), "doc.json")
    jobio.write_json(spark, doc_uri, {"k": [1, 2], "name": "fruit"})
    assert jobio.read_json(spark, doc_uri) == {"k": [1, 2], "name": "fruit"}

    jobio.delete(spark, jobio.qualify(str(tmp_path / "a")))
    assert not jobio.exists(spark, uri)


def make_listing_corpus(root: Path) -> dict[str, str | None]:
    """Files, a broken and a working symbolic link, a pipe, hidden names and folders: what
    each listing must find (path -> the problem the local listing already knows)."""
    (root / "Kiwi").mkdir(parents=True)
    (root / "_tmp" / ".deep").mkdir(parents=True)
    (root / "dir.jpg").mkdir()  # a folder named like an image is no file
    names = ["Kiwi/a.jpg", "Kiwi/_DSC0001.JPG", "Kiwi/12:30.jpg", "Kiwi/new\nline.jpg"]
    names += ["_tmp/t.jpg", "_tmp/.deep/u.png", "Kiwi/zero.jpg", "notes.txt"]
    for name in names:
        (root / name).write_bytes(b"" if "zero" in name else b"x")
    (root / "Kiwi" / "link.jpg").symlink_to(root / "Kiwi" / "a.jpg")
    (root / "Kiwi" / "broken.jpg").symlink_to(root / "nowhere.jpg")
    (root / "Kiwi" / "to-tmp").symlink_to(root / "_tmp")  # a folder link: followed
    os.mkfifo(root / "Kiwi" / "pipe.jpg")
    expected = {f"file:{root / name}": None for name in names + ["Kiwi/link.jpg"]}
    expected |= {f"file:{root / 'Kiwi/to-tmp' / name}": None for name in ("t.jpg", ".deep/u.png")}
    expected[f"file:{root / 'Kiwi/broken.jpg'}"] = "broken symbolic link: its target does not exist"
    expected[f"file:{root / 'Kiwi/pipe.jpg'}"] = "not a regular file (a pipe, socket or device)"
    return expected


def test_the_listing_finds_every_file_whatever_its_name(spark, tmp_path):
    expected = make_listing_corpus(tmp_path / "in")
    assert jobio.list_files(spark, jobio.qualify(str(tmp_path / "in"))) == expected


def test_hadoops_listing_agrees_but_for_what_its_local_file_system_hides(spark, tmp_path):
    """The listing used for s3:// and dbfs:, run on the same local folder: the same files,
    in the format Spark shows, except the broken link (which Hadoop's local listing leaves
    out: why local folders are walked by the OS instead)."""
    expected = make_listing_corpus(tmp_path / "in")
    hadoop = jobio.hadoop_list_files(spark, jobio.qualify(str(tmp_path / "in")))
    assert sorted(hadoop) == sorted(p for p in expected if not p.endswith("broken.jpg"))


def test_paths_come_through_one_by_one_when_a_name_holds_the_separator(spark, tmp_path):
    for name in ("a.jpg", "b c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(jobio.qualify(str(tmp_path)))
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    statuses = jvm.java.util.ArrayList()
    for status in fs.listStatus(path):
        statuses.add(status)
    joined = sorted(jobio.path_strings(spark, statuses))
    assert joined == [f"file:{tmp_path}/a.jpg", f"file:{tmp_path}/b c.jpg"]
    assert sorted(jobio.path_strings(spark, statuses, separator=" ")) == joined


def test_a_missing_folder_is_not_found(spark, tmp_path):
    for uri in (jobio.qualify(str(tmp_path / "nowhere")), "file:" + str(tmp_path / "nope")):
        with pytest.raises(FileNotFoundError):
            jobio.list_files(spark, uri)
    with pytest.raises(FileNotFoundError):
        jobio.hadoop_list_files(spark, jobio.qualify(str(tmp_path / "nowhere")))


def test_probe_reads_the_first_byte_or_says_why_not(spark, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"abc")
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "nowhere")
    assert jobio.probe(spark, f"file:{tmp_path / 'a.jpg'}") == 3
    assert jobio.probe(spark, f"file:{tmp_path / 'zero.jpg'}") == 0
    with pytest.raises(OSError, match="FileNotFoundException"):
        jobio.probe(spark, f"file:{tmp_path / 'broken.jpg'}")
