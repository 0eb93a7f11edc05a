import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image, ImageDraw

import vin_ocr
from vin_ocr.data.prepare import prepare
from vin_ocr.data.sample import ManifestError, read_manifest
from vin_ocr.data.yolo import find_credit, read_yolo

VINS = ["1M8GDM9AXKP042788", "WVWZZZ1KZ8M317048", "XW8ZZZ5NZKG223241"]
REAL = Path(vin_ocr.__file__).resolve().parents[2] / "shared" / "vin-detection"


def make_image(path: Path, size=(200, 100), box=None, grey: int = 90) -> None:
    """A grey image; ``box`` (pixels) painted red, so a crop can be checked by its colour."""
    image = Image.new("RGB", size, (grey, grey, grey))
    if box is not None:
        ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(255, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_label(path: Path, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def make_flat(root: Path) -> Path:
    """images/ + labels/: a.png (one box), b.png (a big class-0 box and a small class-1 box),
    c.png (no label file: a background image)."""
    make_image(root / "images" / "a.png", box=(50, 40, 150, 60))
    write_label(root / "labels" / "a.txt", "0 0.5 0.5 0.5 0.2")
    make_image(root / "images" / "b.png", size=(100, 100), box=(10, 10, 90, 30))
    write_label(root / "labels" / "b.txt", "1 0.5 0.9 0.2 0.1", "0 0.5 0.2 0.8 0.2")
    make_image(root / "images" / "c.png")
    return root


def make_splits(root: Path, yaml: str | None = None) -> Path:
    """train/ (2 images) and valid/ (1 image), each with images/ + labels/; labels.csv has VINs
    for two of them; a README with a credit line."""
    for i, (split, name) in enumerate((("train", "t1"), ("train", "t2"), ("valid", "v1"))):
        make_image(root / split / "images" / f"{name}.jpg", box=(50, 40, 150, 60), grey=60 + 40 * i)
        write_label(root / split / "labels" / f"{name}.txt", "0 0.5 0.5 0.5 0.2")
    (root / "labels.csv").write_text(f"image,vin\ntrain/images/t1.jpg,{VINS[0]}\n")
    with (root / "labels.csv").open("a") as f:
        f.write(f"valid/images/v1.jpg,{VINS[1]}\n")
    (root / "README.md").write_text(
        '# Demo\nLicence: CC BY 4.0, credit "Demo set, someone, CC BY 4.0"\n'
    )
    if yaml is not None:
        (root / "data.yaml").write_text(yaml)
    return root


def cfg_for(*overrides: str):
    with initialize_config_dir(config_dir=str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose("prepare", overrides=["source=yolo", *overrides])


def test_flat_folder_boxes_in_pixels_largest_box_first(tmp_path: Path):
    root = make_flat(tmp_path / "ds")
    samples = read_yolo(root)
    assert [s.image.name for s in samples] == ["a.png", "b.png"]  # c.png: no box, no VIN
    a, b = samples
    assert a.box == (50, 40, 150, 60) and a.crop is False and a.vin == "" and a.source == "yolo"
    assert b.box == (10, 10, 90, 30) and b.meta["class_id"] == 0
    assert b.meta["other_boxes"] == [[1, 40, 85, 60, 95]]
    assert a.meta["_origin"].endswith("a.txt:1")
    make_image(root / "images" / "sub" / "d.png", box=(0, 0, 20, 100))  # nested: labels/sub/
    write_label(root / "labels" / "sub" / "d.txt", "0 0.05 0.5 0.1 1")
    assert read_yolo(root)[-1].box == (0, 0, 20, 100)
    [only] = read_yolo(root, class_ids=[1])
    assert only.image.name == "b.png" and only.box == (40, 85, 60, 95)
    assert "other_boxes" not in only.meta


@pytest.mark.parametrize("layout", ["splits", "data.yaml", "data.yaml file"])
def test_split_folders_and_data_yaml_with_vin_labels(tmp_path: Path, layout: str):
    # Roboflow writes paths that do not resolve from the YAML's folder: found by trailing parts
    yaml = "train: ../data/train/images\nval: ../data/valid/images\nnc: 1\nnames: ['vin']\n"
    root = make_splits(tmp_path / "ds", yaml=None if layout == "splits" else yaml)
    path = root / "data.yaml" if layout == "data.yaml file" else root
    samples = read_yolo(path, labels="labels.csv")
    got = {(s.image.name, s.vin, s.meta["split"]) for s in samples}
    valid = "valid" if layout == "splits" else "val"
    assert got == {
        ("t1.jpg", VINS[0], "train"),
        ("t2.jpg", "", "train"),
        ("v1.jpg", VINS[1], valid),
    }
    assert {s.meta["credit"] for s in samples} == {"Demo set, someone, CC BY 4.0"}
    assert {s.box for s in samples} == {(50, 40, 150, 60)}


def test_unlabelled_skip_writes_a_manifest_to_pseudo_label(tmp_path: Path):
    root = make_splits(tmp_path / "ds")
    out = tmp_path / "out" / "unlabelled.jsonl"
    samples = read_yolo(root, labels="labels.csv", unlabelled="skip", unlabelled_out=out)
    assert sorted(s.vin for s in samples) == sorted(VINS[:2])
    [left] = read_manifest(out)
    assert left.image.resolve() == (root / "train/images/t2.jpg").resolve()
    assert left.vin == "" and left.box == (50, 40, 150, 60)
    with pytest.raises(ValueError, match="unlabelled='drop'"):
        read_yolo(root, unlabelled="drop")


def test_crops_are_the_box_plus_margin(tmp_path: Path):
    root = make_flat(tmp_path / "ds")
    crops = tmp_path / "crops"
    a, b = read_yolo(root, crops=True, crop_dir=crops, margin=0.1)
    assert a.crop is True and a.box is None and a.image.parent == crops / "images"
    assert a.meta["photo_box"] == [50, 40, 150, 60] and Path(a.meta["photo"]).name == "a.png"
    with Image.open(a.image) as im:
        assert im.size == (100 + 2 * 2, 20 + 2 * 2)  # 10 % of the 20 px height on every side
        assert im.convert("RGB").getpixel((im.width // 2, im.height // 2)) == (255, 0, 0)
        assert im.convert("RGB").getpixel((0, 0)) == (90, 90, 90)  # the margin
    with Image.open(b.image) as im:
        assert im.size == (80 + 4, 20 + 4)
    with pytest.raises(ValueError, match="crop_dir"):
        read_yolo(root, crops=True)


def test_exclude_by_resolved_path_and_by_file_name(tmp_path: Path):
    root = make_splits(tmp_path / "ds")
    by_path = tmp_path / "dev.jsonl"  # relative to its own folder, like vin_labels.jsonl
    by_path.write_text(json.dumps({"image": "ds/train/images/t1.jpg", "vin": VINS[0]}) + "\n")
    by_name = tmp_path / "other.csv"  # elsewhere, same file name
    by_name.write_text("file,vin\n/somewhere/else/v1.jpg,X\n")
    samples = read_yolo(root, exclude=[str(by_path), str(by_name)])
    assert [s.image.name for s in samples] == ["t2.jpg"]
    assert len(read_yolo(root, exclude=str(by_path))) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.5", "expected 'class cx cy w h' \\(5 numbers\\)"),
        ("0 0.5 0.5 0.5 0.2 0.3 0.4", "5 numbers"),
        ("vin 0.5 0.5 0.5 0.2", "5 numbers"),
        ("0 0.5 0.5 nan 0.2", "5 numbers"),
        ("0 1.5 0.5 0.5 0.2", "coordinates out of \\[0, 1\\]"),
        ("0 120 50 100 20", "coordinates out of \\[0, 1\\]"),  # pixels, not normalised
        ("0 0.5 0.5 0 0.2", "empty box"),
        ("-1 0.5 0.5 0.5 0.2", "not a non-negative integer"),
    ],
)
def test_bad_label_line_names_file_and_line(tmp_path: Path, line: str, message: str):
    root = make_flat(tmp_path / "ds")
    write_label(root / "labels" / "b.txt", "0 0.5 0.2 0.8 0.2", line)
    with pytest.raises(ManifestError, match=message) as err:
        read_yolo(root)
    assert f"{root / 'labels' / 'b.txt'}:2:" in str(err.value)


def test_label_file_without_image_and_bad_data_yaml(tmp_path: Path):
    root = make_flat(tmp_path / "ds")
    write_label(root / "labels" / "gone.txt", "0 0.5 0.5 0.5 0.2")
    with pytest.raises(ManifestError, match=r"gone.txt: label file without its image"):
        read_yolo(root)
    root = make_splits(tmp_path / "y", yaml="train: [unclosed\n")
    with pytest.raises(ManifestError, match=r"data.yaml:\d+: not readable YAML"):
        read_yolo(root)
    (root / "data.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ManifestError, match=r"data.yaml: expected a mapping with train/val/test"):
        read_yolo(root)
    (root / "data.yaml").write_text("train: nowhere/images\n")
    with pytest.raises(ManifestError, match=r"data.yaml: train: image folder 'nowhere/images'"):
        read_yolo(root)
    with pytest.raises(ManifestError, match=r"expected a dataset folder or its data\.yaml"):
        read_yolo(root / "labels.csv")
    with pytest.raises(FileNotFoundError, match="not a YOLO dataset"):
        read_yolo(tmp_path / "y" / "train" / "labels")
    (root / "data.yaml").unlink()
    (root / "labels.csv").write_text(f"image,vin\ntrain/images/missing.jpg,{VINS[0]}\n")
    with pytest.raises(ManifestError, match=r"labels.csv:2: .*missing.jpg is not an image of"):
        read_yolo(root, labels="labels.csv")


def test_find_credit_from_a_licence_line(tmp_path: Path):
    (tmp_path / "README.dataset.txt").write_text(
        "# Plates > 2023\nhttps://universe.roboflow.com/x/plates\n\nLicense: CC BY 4.0\n"
    )
    assert (
        find_credit(tmp_path)
        == "Plates > 2023, https://universe.roboflow.com/x/plates, licence CC BY 4.0"
    )
    assert find_credit(tmp_path / "nothing") is None


def test_prepare_writes_the_credit_into_the_card(tmp_path: Path):
    root = make_splits(tmp_path / "ds")
    out = tmp_path / "out"
    result = prepare(
        cfg_for(
            f"source.path={root}",
            "source.labels=labels.csv",
            "source.unlabelled=skip",
            "source.crops=true",
            f"out={out}",
            "split.train=0.5",
            "split.val=0",
            "split.test=0.5",
        )
    )
    assert sum(len(p) for p in result.splits.values()) == 2
    card = (out / "README.md").read_text()
    assert "## Attribution\n\n- Demo set, someone, CC BY 4.0" in card
    assert len(read_manifest(out / "unlabelled.jsonl")) == 1
    rows = [json.loads(x) for n in ("train", "test") for x in (out / f"{n}.jsonl").open()]
    assert all(r["crop"] is True and r["image"].startswith("crops/") for r in rows)
    assert all(r["credit"] == "Demo set, someone, CC BY 4.0" for r in rows)
    # credit= overrides the README; a source without one writes no card in jsonl format
    assert {s.meta["credit"] for s in read_yolo(root, credit="Mine, CC0")} == {"Mine, CC0"}
    other = tmp_path / "other"
    prepare(
        cfg_for(
            f"source.path={make_flat(tmp_path / 'flat')}",
            f"out={other}",
            "validate.allow_unlabelled=true",
            "split.train=1",
            "split.val=0",
            "split.test=0",
        )
    )
    assert not (other / "README.md").exists()


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} not here (CI has ../shared)")
def test_real_vin_detection_leaves_out_the_dev_photos():
    dev = REAL / "vin_labels.jsonl"
    dev_names = {Path(json.loads(x)["image"]).name for x in dev.open() if x.strip()}
    assert len(dev_names) == 50
    test_names = {p.name for p in (REAL / "test" / "images").iterdir()}
    assert len(test_names) == 104
    samples = read_yolo(REAL / "test", exclude=[str(dev)])
    names = {s.image.name for s in samples}
    assert names == test_names - dev_names and len(names) < 104  # some dev photos are in test/
    assert {s.meta["credit"] for s in samples} == {
        "Vin detection, kirill-sergeev, Roboflow Universe, CC BY 4.0"
    }
    for s in samples:
        with Image.open(s.image) as im:
            x0, y0, x1, y1 = s.box
            assert 0 <= x0 < x1 <= im.width and 0 <= y0 < y1 <= im.height, s.image
    whole = read_yolo(REAL, exclude=[str(dev)])  # every split, through data.yaml
    assert not {s.image.name for s in whole} & dev_names
    assert len(whole) >= 3395 - 50 - 2  # two background photos have no box
