"""Benchmark the synthetic VIN renderer and record the figures in docs/benchmarks.md.

    python scripts/bench_synth.py                 # 2,000 in memory, 10,000 line crops to disk
    python scripts/bench_synth.py n=1000 memory_n=200 record=false

Measures (1) rendering + augmentation in memory, one process, line crops and scenes; (2) the full
``generate`` (render, augment, JPEG, write, manifest) of ``n`` line crops with every core. Appends
one dated line under ``## Synthetic data`` in docs/benchmarks.md (the file and the section are
created when absent; other sections are left alone).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL

import vin_ocr
from vin_ocr.data.sample import atomic_write_text
from vin_ocr.data.synth import generate, render_sample

SECTION = "## Synthetic data"
DEFAULTS = {"n": 10000, "memory_n": 2000, "scene_n": 100, "seed": 0, "record": True}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children (the workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


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
        cpu0 = _cpu_seconds()
        t = time.perf_counter()
        generate(Path(tmp) / "synth", n, seed=seed, kind="line", workers=cores)
        disk_s = time.perf_counter() - t
        cpu_s = _cpu_seconds() - cpu0
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
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"- {datetime.now(UTC):%Y-%m-%d}, {int(r['cores'])} cores {cpu_model()} "
        f"(load {load:.1f}), Python {platform.python_version()}, numpy {np.__version__}, "
        f"Pillow {PIL.__version__}, vin-ocr {vin_ocr.__version__}: "
        f"line crops in memory, 1 process: {rate(memory_n, r['memory_s'])} "
        f"({r['memory_s'] / memory_n * 1000:.1f} ms each, "
        f"{r['memory_cpu'] / memory_n * 1000:.1f} ms CPU); scenes in memory: "
        f"{rate(scene_n, r['scene_s'])}; `generate` {n:,} line crops to disk (JPEG), "
        f"{int(r['cores'])} workers: {r['disk_s']:.1f} s = {rate(n, r['disk_s'])}, "
        f"{r['disk_mb']:.0f} MB, {r['disk_cpu_s'] / n * 1000:.1f} ms CPU per image "
        f"(= {r['disk_cpu_s'] / r['cores']:.0f} s on {int(r['cores'])} idle cores)."
    )


def record(line: str, path: Path) -> None:
    """Append ``line`` at the end of the ``## Synthetic data`` section of ``path``."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    lines = text.rstrip("\n").split("\n")
    if SECTION not in lines:
        lines += ["", SECTION, "", line]
    else:
        start = lines.index(SECTION) + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
        while end > start and not lines[end - 1].strip():
            end -= 1
        lines.insert(end, line)
    atomic_write_text(path, "\n".join(lines) + "\n")


def parse(argv: list[str]) -> dict[str, int | bool]:
    opts: dict[str, int | bool] = dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in DEFAULTS:
            raise SystemExit(f"bench_synth: unknown option {arg!r}; known: {', '.join(DEFAULTS)}")
        opts[key] = value.lower() in ("1", "true", "yes") if key == "record" else int(value)
    return opts


def main(argv: list[str] | None = None) -> str:
    o = parse(sys.argv[1:] if argv is None else argv)
    n, memory_n, scene_n = int(o["n"]), int(o["memory_n"]), int(o["scene_n"])
    r = measure(n, memory_n, scene_n, int(o["seed"]))
    line = report_line(r, n, memory_n, scene_n)
    print(line)
    if o["record"]:
        record(line, vin_ocr.REPO_ROOT / "docs" / "benchmarks.md")
    return line


if __name__ == "__main__":
    main()
