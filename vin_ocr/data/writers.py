"""Writers beside :func:`vin_ocr.data.sample.write_manifest`: parquet with the images embedded,
and a Hugging Face dataset card. Both write through a temporary file and a rename.

The parquet files follow the Hugging Face ``datasets`` layout (an ``Image`` feature stored as
``{"bytes", "path"}``), so ``datasets.load_dataset("parquet", data_files=...)`` decodes the
images, and :func:`vin_ocr.data.readers.read_hf_dataset` reads them back. Columns: ``image``,
``vin``, ``source``, ``box`` (4 ints or null), ``crop`` (bool or null), ``meta`` (a JSON object
as a string, since its keys differ between samples).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vin_ocr.data.sample import Sample, atomic_write_text

PathLike = str | os.PathLike[str]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_meta(sample: Sample) -> dict:
    """``meta`` without our bookkeeping keys (those starting with ``_``, e.g. ``_origin``)."""
    return {k: v for k, v in sample.meta.items() if not k.startswith("_")}


def write_parquet(samples: Iterable[Sample], path: PathLike) -> Path:
    """Write samples to one parquet file with each image's bytes embedded, atomically."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    samples = list(samples)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "vin": datasets.Value("string"),
            "source": datasets.Value("string"),
            "box": datasets.List(datasets.Value("int32")),
            "crop": datasets.Value("bool"),
            "meta": datasets.Value("string"),
        }
    )
    columns = {
        "image": [
            {"bytes": Path(s.image).read_bytes(), "path": Path(s.image).name} for s in samples
        ],
        "vin": [s.vin for s in samples],
        "source": [s.source for s in samples],
        "box": [list(s.box) if s.box is not None else None for s in samples],
        "crop": [s.crop for s in samples],
        "meta": [json.dumps(public_meta(s), ensure_ascii=False, sort_keys=True) for s in samples],
    }
    table = pa.Table.from_pydict(columns, schema=features.arrow_schema)  # keeps the HF metadata
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` tag for ``n`` examples.

    >>> size_category(999), size_category(1000), size_category(25_000)
    ('n<1K', '1K<n<10K', '10K<n<100K')
    """
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")]
    bounds += [(1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    return next((tag for limit, tag in bounds if n < limit), "n>1B" if n > 10**9 else "100M<n<1B")


def dataset_card(
    splits: Mapping[str, Sequence[Sample]],
    *,
    data_files: Mapping[str, str] | None = None,
    license: str = "other",
    pretty_name: str = "VIN OCR",
    description: str = "",
    credits: Sequence[str] = (),
) -> str:
    """A dataset card (README.md text with the Hub's YAML header) with counts per split/source;
    ``credits`` (attribution lines the sources' licences require) get their own section."""
    from huggingface_hub import DatasetCard, DatasetCardData

    total = sum(len(v) for v in splits.values())
    extra: dict[str, Any] = {}
    if data_files:
        files = [{"split": k, "path": v} for k, v in data_files.items()]
        extra["configs"] = [{"config_name": "default", "data_files": files}]
    data = DatasetCardData(
        license=license,
        task_categories=["image-to-text"],
        tags=["vin", "ocr"],
        size_categories=[size_category(total)],
        pretty_name=pretty_name,
        **extra,
    )
    sources = sorted({s.source for part in splits.values() for s in part})
    header = "| split | samples | VINs | " + " | ".join(sources) + " |"
    rows = [header, "|" + "---|" * (3 + len(sources))]
    for name, part in splits.items():
        by_source = Counter(s.source for s in part)
        vins = len({s.vin for s in part if s.vin})
        cells = [name, str(len(part)), str(vins), *(str(by_source[src]) for src in sources)]
        rows.append("| " + " | ".join(cells) + " |")
    body = [
        f"# {pretty_name}",
        "",
        description
        or "Photos and crops of Vehicle Identification Numbers (VINs) with their 17-character "
        "labels, for training and evaluating OCR models.",
        "",
        "Splits are grouped by VIN: no VIN appears in two splits. Columns: `image`, `vin`, "
        "`source`, `box` ([x0, y0, x1, y1] of the VIN, pixels, or null), `crop` (the image holds "
        "only the VIN line), `meta` (JSON text).",
        "",
        f"## Counts\n\n{total} samples.\n",
        *rows,
        "",
        *(["## Attribution", "", *(f"- {c}" for c in credits), ""] if credits else []),
        "Prepared with `python -m vin_ocr.data.prepare` (vin-ocr).",
    ]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n"))


def write_dataset_card(path: PathLike, splits: Mapping[str, Sequence[Sample]], **kwargs) -> Path:
    """Write :func:`dataset_card` to ``path`` (usually ``README.md``) atomically."""
    return atomic_write_text(path, dataset_card(splits, **kwargs))
