"""Measure the CTC check-digit search: repairs that fixed a reading vs repairs that broke one.

    python scripts/bench_repairs.py                      # 4 conditions x 500 crops, ~3 min, 1 core
    python scripts/bench_repairs.py n=100 conditions=[stamped] out=repairs.json

Options are ``key=value`` (OmegaConf dot-list, checked against :class:`Bench`; a typo fails
naming the key). Synthetic VIN line crops (:class:`vin_ocr.data.synth.SynthDataset`, seed
``seed``, regions North America, China and Europe in equal shares) are rendered under each
condition of :data:`CONDITIONS`, read by the pretrained PP-OCR recogniser
(``configs/model/pp_ocr.yaml``: the converted RapidOCR weights, VIN head) and decoded three ways:

- ``greedy``: best path, no search;
- ``viterbi``: :func:`vin_ocr.decoding.ctc.ctc_read` (the search over CTC alignments);
- ``positions``: the same search restricted to the greedy reading's 17 character slots (each
  slot's distribution is its most confident frame, blank removed), i.e. the per-position
  dynamic programme; it only runs when greedy decoding gave 17 characters.

Per method, condition and region group (``mandatory``: North America + China; ``optional``:
Europe) it scores the readings as the harness does (:func:`vin_ocr.bench.score`): strict exact
match on the reading (``exact_*``), the lenient one beside it (``exact_lenient_*``: a VIN found
in it by :func:`vin_ocr.vin.normalize`) and corpus CER; and counts, with
:func:`vin_ocr.evaluation.evaluate.repair_counts` (strict), the readings the search changed,
fixed, broke or left wrong. Figures recorded before 2026-12-01 scored ``exact``/``cer`` on
``vin.normalize(reading)``. Prints one JSON object; ``out=`` also writes it. The figures are
recorded by hand in docs/benchmarks.md and docs/decoding.md.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from vin_ocr.bench import score
from vin_ocr.data.synth import SynthDataset
from vin_ocr.decoding.ctc import ctc_read, greedy, needs_search, vin_search
from vin_ocr.evaluation.evaluate import repair_counts
from vin_ocr.evaluation.metric import clean
from vin_ocr.models.pp_ocr import VIN_CHARSET, PPOCRFamily
from vin_ocr.reading import Reading
from vin_ocr.vin import check_digit_mandatory

#: Synthetic-data overrides per condition (on top of the regions below).
CONDITIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "stamped": {"looks": ["stamped"]},
    "low_res": {"line_height": [14, 20]},
    "blur": {"augment": {"p_blur": 1.0, "blur": 2.5, "motion_blur": 9}},
}
REGIONS = ["north_america", "china", "europe"]
METHODS = ("greedy", "viterbi", "positions")


@dataclass
class Bench:
    n: int = 500  # crops per condition
    seed: int = 1000  # not a training seed (the embedded default trains on 0, validates on 1)
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    threads: int = 1
    batch: int = 32
    out: str = ""


def positions_read(probs: np.ndarray, charset: list[str]) -> Reading:
    """The per-position variant: the search over the greedy reading's 17 slots only."""
    text, confs = greedy(probs, charset)
    if len(text) != 17 or not needs_search(text):
        return Reading(text, char_conf=confs)
    best = probs.argmax(1)
    starts = np.flatnonzero((best != 0) & np.r_[True, best[1:] != best[:-1]])
    ends = np.r_[starts, len(best)][1:]
    slots = np.zeros((2 * len(starts) + 1, probs.shape[1]))
    slots[::2, 0] = 1.0  # a sure blank between slots keeps the repeat rule out of the way
    for j, (s, e) in enumerate(zip(starts, ends, strict=True)):
        frame = s + int(np.argmax(np.where(best[s:e] == best[s], probs[s:e, best[s]], -1.0)))
        slots[2 * j + 1, 1:] = probs[frame, 1:] / probs[frame, 1:].sum()
    found = vin_search(slots, charset)
    return Reading(found[0] if found else text, unconstrained=text)


def read_all(family: PPOCRFamily, model: torch.nn.Module, images: list[Any], batch: int):
    """Per-frame probabilities (T, 34) of each crop."""
    out: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            pixels = family.pixel_values(images[start : start + batch])
            probs = family.vin_logits(model, pixels).float().softmax(-1).numpy()
            out.extend(probs)
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Exact match (strict, and lenient beside it) and character error rate before/after the
    search, the repair counts, and ``region_missed``: readings of a mandatory-region truth whose
    first character was read outside the mandatory set (so the search could not run)."""
    if not rows:
        return {"n": 0}
    truth = [r["truth"] for r in rows]
    before = score(truth, [r.get("unconstrained", r["text"]) for r in rows])
    after = score(truth, [r["text"] for r in rows])
    figures = {}
    for name, key in (("exact", "exact_match"), ("exact_lenient", "exact_match_lenient")):
        figures |= {f"{name}_before": before[key], f"{name}_after": after[key]}
    figures |= {"cer_before": before["cer"], "cer_after": after["cer"]}
    return {
        "n": len(rows),
        **{k: round(v, 4) for k, v in figures.items()},
        **repair_counts(rows),
        "region_missed": sum(
            check_digit_mandatory(t)
            and not check_digit_mandatory(clean(r.get("unconstrained", r["text"])))
            for t, r in zip(truth, rows, strict=True)
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    schema = OmegaConf.structured(Bench)
    o: Bench = OmegaConf.to_object(  # type: ignore[assignment]
        OmegaConf.merge(schema, OmegaConf.from_dotlist(sys.argv[1:] if argv is None else argv))
    )
    unknown = [c for c in o.conditions if c not in CONDITIONS]
    if unknown:
        raise SystemExit(
            f"bench_repairs: unknown condition(s) {unknown}; known: {list(CONDITIONS)}"
        )
    torch.set_num_threads(o.threads)
    family = PPOCRFamily({"head": "vin"})
    model, _ = family.build(None, None)
    model.eval()
    decoders = {
        "greedy": lambda p: ctc_read(p, VIN_CHARSET, search=False),
        "viterbi": lambda p: ctc_read(p, VIN_CHARSET),
        "positions": lambda p: positions_read(p, VIN_CHARSET),
    }
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    seconds = {"render": 0.0, "recognise": 0.0, **{m: 0.0 for m in METHODS}}
    examples: list[dict[str, str | None]] = []
    for ci, condition in enumerate(o.conditions):
        cfg = {"kind": "line", "regions": REGIONS, **CONDITIONS[condition]}
        data = SynthDataset(o.n, seed=o.seed + ci, cfg=cfg)
        start = time.perf_counter()
        samples = [data[i] for i in range(len(data))]
        seconds["render"] += time.perf_counter() - start
        start = time.perf_counter()
        all_probs = read_all(family, model, [s[0] for s in samples], o.batch)
        seconds["recognise"] += time.perf_counter() - start
        for (_, truth, meta), probs in zip(samples, all_probs, strict=True):
            group = "mandatory" if meta["region"] in ("north_america", "china") else "optional"
            for method, decode in decoders.items():
                start = time.perf_counter()
                r = decode(probs)
                seconds[method] += time.perf_counter() - start
                row = {"truth": truth, "exact": clean(r.text) == truth, **r.to_json()}
                groups[(method, condition, group)].append(row)
                if method == "viterbi" and r.repaired and len(examples) < 12:
                    examples.append({"truth": truth, "greedy": r.unconstrained, "search": r.text})
    result: dict[str, Any] = {"methods": {}}
    for method in METHODS:
        per: dict[str, Any] = {}
        for condition in o.conditions:
            for group in ("mandatory", "optional"):
                per[f"{condition}/{group}"] = summarise(groups[(method, condition, group)])
        for group in ("mandatory", "optional"):
            rows = [r for c in o.conditions for r in groups[(method, c, group)]]
            per[f"all/{group}"] = summarise(rows)
        per["all"] = summarise([r for k, rows in groups.items() if k[0] == method for r in rows])
        result["methods"][method] = per
    total = len(o.conditions) * o.n
    result["examples_repaired"] = examples
    result["ms_per_crop"] = {k: round(1000 * v / total, 2) for k, v in seconds.items()}
    result["env"] = {
        "n_per_condition": o.n,
        "seed": o.seed,
        "threads": o.threads,
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "load_avg_1min": round(os.getloadavg()[0], 1),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    print(json.dumps(result, indent=1), flush=True)
    if o.out:
        Path(o.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
