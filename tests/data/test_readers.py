import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from vin_ocr.data.readers import (
    ORIGIN,
    read_folder,
    read_hf_dataset,
    read_jsonl_manifest,
    read_labels_file,
    read_paddle_labels,
    store_image_bytes,
    vin_from_name,
)
from vin_ocr.data.sample import ManifestError, Sample, write_manifest

VINS = ["1M8GDM9AXKP042788", "WVWZZZ1JZXW000001", "JH4KA7561PC008269"]


def png(path: Path, color: str = "white", size: tuple[int, int] = (64, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_csv_default_columns_extra_columns_and_lines(tmp_path: Path):
    png(tmp_path / "imgs" / "a.png")
    png(tmp_path / "imgs" / "b.png")
    (tmp_path / "labels.csv").write_text(
        f"file,VIN,angle\nimgs/a.png, {VINS[0].lower()} ,10\n\nimgs/b.png,{VINS[1]},-5\n"
    )
    samples = read_folder(tmp_path, "labels.csv")
    assert [s.vin for s in samples] == VINS[:2]  # stripped and upper-cased
    assert samples[0].image == tmp_path / "imgs" / "a.png"
    assert samples[0].meta["angle"] == "10"
    assert samples[0].meta[ORIGIN] == f"{tmp_path / 'labels.csv'}:2"
    assert samples[1].meta[ORIGIN] == f"{tmp_path / 'labels.csv'}:4"  # the blank line counts
    assert {s.source for s in samples} == {"user"}


def test_folder_finds_labels_file_by_default(tmp_path: Path):
    png(tmp_path / "a.png")
    (tmp_path / "labels.jsonl").write_text(
        json.dumps({"path": "a.png", "label": VINS[2], "source": "dealer", "look": "plate"}) + "\n"
    )
    [s] = read_folder(tmp_path)
    assert (s.image, s.vin, s.source) == (tmp_path / "a.png", VINS[2], "dealer")
    assert s.meta["look"] == "plate"


def test_tsv_with_named_columns(tmp_path: Path):
    png(tmp_path / "x" / "a.png")
    labels = tmp_path / "gt.tsv"
    labels.write_text(f"img_name\tplate\tnote\nx/a.png\t{VINS[0]}\tok\n")
    [s] = read_labels_file(labels, image_key="IMG_NAME", vin_key="plate", source="fleet")
    assert (s.image, s.vin, s.source, s.meta["note"]) == (
        tmp_path / "x/a.png",
        VINS[0],
        "fleet",
        "ok",
    )


def test_labels_errors_name_file_and_line(tmp_path: Path):
    bad = tmp_path / "labels.csv"
    bad.write_text(f"file,vin\na.png,{VINS[0]}\nb.png,{VINS[1]},extra\n")
    with pytest.raises(ManifestError, match=r"labels\.csv:3: 3 fields, the header has 2"):
        read_labels_file(bad)
    bad.write_text(f"picture,vin\na.png,{VINS[0]}\n")
    with pytest.raises(ManifestError, match=r"labels\.csv:2: no image column.*'picture'"):
        read_labels_file(bad)
    with pytest.raises(ManifestError, match="no vin column 'plate'"):
        read_labels_file(bad, image_key="picture", vin_key="plate")
    bad.write_text("file,vin\na.png\n")  # a short row: an empty VIN, left to validation
    [short] = read_labels_file(bad)
    assert (short.vin, short.meta[ORIGIN]) == ("", f"{bad}:2")
    jl = tmp_path / "labels.jsonl"
    jl.write_text(json.dumps({"image": "a.png", "vin": VINS[0]}) + "\n{oops\n")
    with pytest.raises(ManifestError, match=r"labels\.jsonl:2: not valid JSON"):
        read_labels_file(jl)
    (tmp_path / "labels.xml").write_text("<x/>")
    with pytest.raises(ManifestError, match="unknown labels format"):
        read_labels_file(tmp_path / "labels.xml")


def test_folder_without_labels_refuses_file_names_unless_asked(tmp_path: Path, caplog):
    png(tmp_path / f"front_{VINS[0].lower()}.jpg")
    png(tmp_path / "sub" / f"{VINS[1]}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match="vin_from_filename"):
        read_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="vin_ocr.data.readers"):
        samples = read_folder(tmp_path, vin_from_filename=True)
    assert sorted(s.vin for s in samples) == sorted(VINS[:2])
    assert all(s.meta["vin_from_filename"] for s in samples)
    assert "leaked labels" in caplog.text


def test_labels_file_wins_over_file_names(tmp_path: Path, caplog):
    png(tmp_path / f"{VINS[0]}.png")
    (tmp_path / "labels.csv").write_text(f"image,vin\n{VINS[0]}.png,{VINS[2]}\n")
    with caplog.at_level(logging.WARNING):
        [s] = read_folder(tmp_path, "labels.csv", vin_from_filename=True)
    assert s.vin == VINS[2] and "leaked" not in caplog.text


def test_vin_from_name_without_vin_keeps_stem():
    assert vin_from_name("dir/abc-12.png") == "ABC-12"


def test_paddle_labels(tmp_path: Path):
    png(tmp_path / "train_data" / "rec" / "train" / "w1.png")
    png(tmp_path / "train_data" / "rec" / "train" / "w2.png")
    labels = tmp_path / "train_data" / "rec" / "rec_gt_train.txt"
    labels.write_text(f"train/w1.png\t{VINS[0]}\r\n\ntrain/w2.png\t{VINS[1]}\n")
    samples = read_paddle_labels(labels)
    assert [s.vin for s in samples] == VINS[:2]
    assert samples[1].image == tmp_path / "train_data/rec/train/w2.png"
    assert samples[1].meta[ORIGIN] == f"{labels}:3"
    other_root = read_paddle_labels(labels, root=tmp_path / "elsewhere")
    assert other_root[0].image == tmp_path / "elsewhere/train/w1.png"
    labels.write_text(f"train/w1.png\t{VINS[0]}\ntrain/w2.png {VINS[1]}\n")
    with pytest.raises(
        ManifestError, match=r"rec_gt_train\.txt:2: expected 'image_path<TAB>label'"
    ):
        read_paddle_labels(labels)


def test_jsonl_manifest_reader_records_lines(tmp_path: Path):
    write_manifest(
        [Sample(tmp_path / "a.png", VINS[0]), Sample(tmp_path / "b.png", VINS[1], crop=True)],
        tmp_path / "m.jsonl",
    )
    samples = read_jsonl_manifest(tmp_path / "m.jsonl")
    assert [s.meta[ORIGIN] for s in samples] == [f"{tmp_path / 'm.jsonl'}:{n}" for n in (1, 2)]
    assert samples[1].crop is True


def _image_bytes(color: str) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (40, 12), color).save(buf, format="PNG")
    return buf.getvalue()


def test_hf_save_to_disk_with_images_in_memory(tmp_path: Path):
    import datasets

    feats = datasets.Features(
        {"image": datasets.Image(), "text": datasets.Value("string"), "id": datasets.Value("int64")}
    )
    raw = [_image_bytes("red"), _image_bytes("blue")]
    train = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in raw], "text": VINS[:2], "id": [7, 8]},
        features=feats,
    )
    test = datasets.Dataset.from_dict(
        {"image": [{"bytes": raw[0], "path": None}], "text": [VINS[2]], "id": [9]}, features=feats
    )
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "ds"))

    samples = read_hf_dataset(str(tmp_path / "ds"), image_dir=tmp_path / "imgs")
    assert [(s.vin, s.meta["split"], s.meta["id"]) for s in samples] == [
        (VINS[0], "train", 7),
        (VINS[1], "train", 8),
        (VINS[2], "test", 9),
    ]
    assert samples[0].image.read_bytes() == raw[0]
    assert samples[2].image == samples[0].image  # same bytes, same content-addressed file
    assert samples[0].image.suffix == ".png" and samples[0].source == "hf"
    assert {p.name for p in (tmp_path / "imgs").iterdir()} == {s.image.name for s in samples}

    only_test = read_hf_dataset(str(tmp_path / "ds"), split="test", image_dir=tmp_path / "imgs")
    assert [s.vin for s in only_test] == [VINS[2]]
    with pytest.raises(ManifestError, match="no split 'val'"):
        read_hf_dataset(str(tmp_path / "ds"), split="val", image_dir=tmp_path / "imgs")
    with pytest.raises(ValueError, match="image_dir"):
        read_hf_dataset(str(tmp_path / "ds"))


def test_hf_parquet_with_path_column_and_arrow_file(tmp_path: Path):
    import datasets

    png(tmp_path / "pics" / "a.png")
    ds = datasets.Dataset.from_dict({"file_name": ["pics/a.png"], "vin": [VINS[0]]})
    ds.to_parquet(str(tmp_path / "train-00000-of-00001.parquet"))
    [s] = read_hf_dataset(str(tmp_path / "train-00000-of-00001.parquet"))
    assert (s.image, s.vin) == (tmp_path / "pics/a.png", VINS[0])
    assert s.meta[ORIGIN].endswith(".parquet row 0")
    [s2] = read_hf_dataset(str(tmp_path))  # a folder of parquet files; split from the name
    assert s2.meta["split"] == "train"
    (tmp_path / "arrow").mkdir()
    ds.save_to_disk(str(tmp_path / "arrow"))
    [arrow] = sorted((tmp_path / "arrow").glob("*.arrow"))
    [s3] = read_hf_dataset(str(arrow), image_column="file_name")
    assert (s3.image, s3.vin) == (tmp_path / "arrow/pics/a.png", VINS[0])
    with pytest.raises(ManifestError, match="no vin column 'plate'"):
        read_hf_dataset(str(arrow), vin_column="plate")


def test_store_image_bytes_is_idempotent(tmp_path: Path):
    a = store_image_bytes(b"not really an image", tmp_path)
    assert a.suffix == ".bin"
    assert store_image_bytes(b"not really an image", tmp_path) == a
    assert [p.name for p in tmp_path.iterdir()] == [a.name]  # no temporary files left


def test_relative_labels_prefer_the_folder(tmp_path: Path, monkeypatch):
    png(tmp_path / "data" / "a.png")
    (tmp_path / "data" / "labels.csv").write_text(f"image,vin\na.png,{VINS[0]}\n")
    (tmp_path / "labels.csv").write_text(f"image,vin\na.png,{VINS[1]}\n")
    monkeypatch.chdir(tmp_path)
    assert [s.vin for s in read_folder("data", "labels.csv")] == [VINS[0]]
    (tmp_path / "data" / "labels.csv").unlink()
    assert [s.vin for s in read_folder("data", "labels.csv")] == [VINS[1]]  # then the cwd
