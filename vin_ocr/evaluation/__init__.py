"""Evaluation: the VIN metric, the engines, the harness (``evaluate``) and run comparison
(``compare``)."""

from vin_ocr.evaluation.engines import ENGINES, Engine, EngineUnavailable, build_engine
from vin_ocr.evaluation.metric import SampleScore, VinMetric, align, levenshtein

__all__ = [
    "ENGINES",
    "Engine",
    "EngineUnavailable",
    "SampleScore",
    "VinMetric",
    "align",
    "build_engine",
    "levenshtein",
]
