"""Benchmark the synthetic VIN renderer and record the figures in docs/benchmarks.md.

    python scripts/bench_synth.py                 # 2,000 in memory, 10,000 line crops to disk
    python scripts/bench_synth.py n=1000 memory_n=200 record=false

Measures (1) rendering + augmentation in memory, one process, line crops and scenes; (2) the full
``generate`` (render, augment, JPEG, write, manifest) of ``n`` line crops with every core. Appends
one dated line under ``## Synthetic data`` in docs/benchmarks.md (``out=`` another file). Options
are ``key=value`` (:class:`SynthBench`; a typo fails naming the key).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vin_ocr import bench
from vin_ocr.data.synth import generate, render_sample

SECTION = "## Synthetic data"


@dataclass
class SynthBench:
    n: int = 10000  # line crops written to disk by `generate`
    memory_n: int = 2000  # line crops rendered in memory
    scene_n: int = 100  # scenes rendered in memory
    seed: int = 0
    quick: bool = False  # a few images of each (tests)
    record: bool = True
    out: str = ""  # the Markdown file to append to; "" = docs/benchmarks.md


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} img/s"


def measure(n: int, memory_n: int, scene_n: int, seed: int) -> dict[str, float]:
    cores = os.cpu_count() or 1
    render_sample(0, seed)  # warm the font caches
    t, c = time.perf_counter(), time.process_time()
    for i in range(memory_n):
        render_sample(i, seed, {"kind": "line"})
    memory_s, memory_cpu = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    for i in range(scene_n):
        render_sample(i, seed, {"kind": "scene"})
    scene_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        cpu0 = bench.cpu_seconds()
        t = time.perf_counter()
        generate(Path(tmp) / "synth", n, seed=seed, kind="line", workers=cores)
        disk_s = time.perf_counter() - t
        cpu_s = bench.cpu_seconds() - cpu0
        size = sum(f.stat().st_size for f in (Path(tmp) / "synth").rglob("*") if f.is_file())
    return {
        "cores": cores,
        "memory_s": memory_s,
        "memory_cpu": memory_cpu,
        "scene_s": scene_s,
        "disk_s": disk_s,
        "disk_cpu_s": cpu_s,
        "disk_mb": size / 1e6,
    }


def report_line(r: dict[str, float], n: int, memory_n: int, scene_n: int) -> str:
    return (
        f"- {bench.header(('numpy', 'Pillow', 'vin-ocr'))}: "
        f"line crops in memory, 1 process: {rate(memory_n, r['memory_s'])} "
        f"({r['memory_s'] / memory_n * 1000:.1f} ms each, "
        f"{r['memory_cpu'] / memory_n * 1000:.1f} ms CPU); scenes in memory: "
        f"{rate(scene_n, r['scene_s'])}; `generate` {n:,} line crops to disk (JPEG), "
        f"{int(r['cores'])} workers: {r['disk_s']:.1f} s = {rate(n, r['disk_s'])}, "
        f"{r['disk_mb']:.0f} MB, {r['disk_cpu_s'] / n * 1000:.1f} ms CPU per image "
        f"(= {r['disk_cpu_s'] / r['cores']:.0f} s on {int(r['cores'])} idle cores)."
    )


def main(argv: list[str] | None = None) -> str:
    o = bench.parse_options(SynthBench, sys.argv[1:] if argv is None else argv, "bench_synth")
    if o.quick:
        o.n, o.memory_n, o.scene_n = 20, 5, 1
    r = measure(o.n, o.memory_n, o.scene_n, o.seed)
    line = report_line(r, o.n, o.memory_n, o.scene_n)
    print(line)
    if o.record:
        bench.record(line, SECTION, o.out or bench.BENCHMARKS_MD)
    return line


if __name__ == "__main__":
    main()
