"""Readers for the data users already have; each returns ``list[Sample]``.

- :func:`read_folder`: a folder of images plus a labels file (CSV, TSV or JSONL), or, only when
  asked, VINs taken from the file names.
- :func:`read_labels_file`: the labels file alone (image paths relative to a root folder).
- :func:`read_paddle_labels`: PaddleOCR recognition label files (``path<TAB>label`` per line).
- :func:`read_hf_dataset`: Hugging Face ``datasets`` (a ``save_to_disk`` folder, ``.parquet`` or
  ``.arrow`` files, or a Hub id); images held in memory are written out as files.
- :func:`read_jsonl_manifest`: our own JSONL manifest (:func:`vin_ocr.data.sample.read_manifest`).

Every sample carries where it came from in ``meta["_origin"]`` (``"labels.csv:12"``, ``"x.parquet
row 3"``) so that validation can name the file and line; columns we do not use are kept in
``meta``. Labels are stripped and upper-cased and nothing else: fixing ``O`` to ``0`` or the like
is for validation to report, not for a reader to do silently.

Modules: ``files`` (label files, folders, PaddleOCR, manifests, the shared column helpers) and
``hf`` (Hugging Face datasets and parquet). Import from ``vin_ocr.data.readers``.
"""

from vin_ocr.data.readers.files import (
    DEFAULT_LABEL_FILES,
    IMAGE_KEYS,
    IMAGE_SUFFIXES,
    LEAK_WARNING,
    ORIGIN,
    VIN_KEYS,
    PathLike,
    read_folder,
    read_jsonl_manifest,
    read_labels_file,
    read_paddle_labels,
    vin_from_name,
)
from vin_ocr.data.readers.hf import read_hf_dataset, store_image_bytes

__all__ = [
    "DEFAULT_LABEL_FILES",
    "IMAGE_KEYS",
    "IMAGE_SUFFIXES",
    "LEAK_WARNING",
    "ORIGIN",
    "VIN_KEYS",
    "PathLike",
    "read_folder",
    "read_hf_dataset",
    "read_jsonl_manifest",
    "read_labels_file",
    "read_paddle_labels",
    "store_image_bytes",
    "vin_from_name",
]
