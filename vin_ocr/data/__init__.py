"""Samples, manifests, readers for users' data, validation, splits and the synthetic renderer."""

from vin_ocr.data.sample import Sample, read_manifest, write_manifest

__all__ = ["Sample", "read_manifest", "write_manifest"]
