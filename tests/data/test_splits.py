import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vin_ocr.data.sample import Sample
from vin_ocr.data.splits import check_ratios, split_by_vin


def make(vin_ids: list[int]) -> list[Sample]:
    return [
        Sample(Path(f"img/{i}.png"), f"VIN{v:05d}" if v >= 0 else "") for i, v in enumerate(vin_ids)
    ]


ratio_sets = (
    st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
    .filter(lambda r: sum(r) > 0.01)
    .map(lambda r: {k: v / sum(r) for k, v in zip(("train", "val", "test"), r, strict=True)})
)


@settings(max_examples=150, deadline=None)
@given(
    vin_ids=st.lists(st.integers(-1, 40), min_size=0, max_size=120),
    ratios=ratio_sets,
    seed=st.integers(0, 2**32),
)
def test_grouped_complete_deterministic_and_close(vin_ids, ratios, seed):
    samples = make(vin_ids)
    ratios = check_ratios(ratios)
    parts = split_by_vin(samples, ratios, seed=seed)
    assert list(parts) == ["train", "val", "test"]
    # every sample exactly once, original order kept within a split
    assert sorted(s.image for p in parts.values() for s in p) == sorted(s.image for s in samples)
    for part in parts.values():
        assert part == [s for s in samples if s in part]
    # no VIN in two splits
    owner: dict[str, str] = {}
    for name, part in parts.items():
        for s in part:
            if s.vin:
                assert owner.setdefault(s.vin, name) == name
    # sizes within one group of the ratios
    biggest = max(Counter(s.vin or str(s.image) for s in samples).values(), default=0)
    for name, part in parts.items():
        assert abs(len(part) - ratios[name] * len(samples)) <= biggest
        if ratios[name] == 0:
            assert part == []
    assert split_by_vin(list(samples), dict(ratios), seed=seed) == parts


def test_seed_changes_the_split_and_unlabelled_are_single_groups():
    samples = make(list(range(100)) + [-1] * 10)
    a, b = split_by_vin(samples, seed=0), split_by_vin(samples, seed=1)
    assert {n: len(p) for n, p in a.items()} == {"train": 88, "val": 11, "test": 11}
    assert a["test"] != b["test"]
    unlabelled = [name for name, p in a.items() for s in p if not s.vin]
    assert len(set(unlabelled)) > 1  # not all kept together: each is its own group


def test_same_split_in_another_process():
    """Stable across interpreters (no reliance on Python's randomised hash())."""
    code = (
        "import json\nfrom pathlib import Path\nfrom vin_ocr.data.sample import Sample\n"
        "from vin_ocr.data.splits import split_by_vin\n"
        "s = [Sample(Path(f'{i}.png'), f'V{i % 37}') for i in range(300)]\n"
        "print(json.dumps({k: [str(x.image) for x in v] "
        "for k, v in split_by_vin(s, seed=5).items()}))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    here = split_by_vin([Sample(Path(f"{i}.png"), f"V{i % 37}") for i in range(300)], seed=5)
    assert json.loads(runs[0]) == {k: [str(x.image) for x in v] for k, v in here.items()}


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ({"train": 0.8, "val": 0.1, "test": 0.2}, "sum to 1"),
        ({"train": 1.2, "val": -0.2}, ">= 0"),
        ({}, "at least one"),
    ],
)
def test_bad_ratios(ratios, message):
    with pytest.raises(ValueError, match=message):
        split_by_vin(make([1, 2]), ratios)


def test_custom_split_names():
    parts = split_by_vin(make(list(range(20))), {"train": 0.5, "holdout": 0.5})
    assert {n: len(p) for n, p in parts.items()} == {"train": 10, "holdout": 10}
