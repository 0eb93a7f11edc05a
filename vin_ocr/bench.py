"""What every benchmark script (``scripts/bench_*.py``) shares: options, machine, timing, memory,
and the dated entry appended to ``docs/benchmarks.md``.

- :func:`parse_options`: ``key=value`` arguments (OmegaConf dot-list, lists as ``k=[a,b]``)
  checked against a dataclass, so a typo fails naming the key;
- :func:`header`: date, machine (CPU model, cores, RAM, load, GPU) and package versions;
- :func:`time_calls`, :func:`cpu_seconds`: wall and CPU time;
- :func:`reset_peak_memory` / :func:`peak_memory_gib`: peak RSS of this process on CPU (Linux
  resets it through ``/proc/self/clear_refs``), peak allocated CUDA memory on a GPU;
- :func:`score`: exact match, the lenient one beside it, and CER, as the evaluation harness
  defines them (:class:`vin_ocr.evaluation.metric.VinMetric`);
- :func:`record`: append an entry at the end of a ``## `` section of a Markdown file (created if
  absent), written through a temporary file and a rename, every other section left as it was.

>>> from dataclasses import dataclass
>>> @dataclass
... class Opts:
...     n: int = 10
...     names: tuple[str, ...] = ("a",)
>>> parse_options(Opts, ["n=3", "names=[x,y]"], "demo")
Opts(n=3, names=['x', 'y'])
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import vin_ocr
from vin_ocr.data.sample import atomic_write_text

#: Where the figures are recorded (scripts take ``out=PATH`` to write elsewhere, e.g. in tests).
BENCHMARKS_MD = vin_ocr.REPO_ROOT / "docs" / "benchmarks.md"
GIB = 1024**3

T = TypeVar("T")


def parse_options(schema: type[T], argv: Sequence[str] | None, prog: str) -> T:
    """``schema`` (a dataclass) filled from ``key=value`` arguments (``sys.argv[1:]`` when
    ``argv`` is None); an unknown key or a value of the wrong type exits naming it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    args = list(sys.argv[1:] if argv is None else argv)
    for arg in args:
        if "=" not in arg:
            raise SystemExit(f"{prog}: expected key=value, got {arg!r}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(args))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        first = str(err).splitlines()[0]
        raise SystemExit(f"{prog}: {first}") from None


# -- the machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float:
    """Physical memory of the machine."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return float("nan")


def gpu_name() -> str | None:
    """The first CUDA GPU's name and memory, or None (torch is only asked if installed)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return f"{props.name} ({props.total_memory / GIB:.0f} GiB)"


def machine() -> str:
    """E.g. ``2 cores AMD EPYC 7B13 (load 1.1), 24 GiB RAM, no GPU``."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = gpu_name()
    where = f"GPU {gpu}" if gpu else "no GPU"
    cpu = f"{os.cpu_count()} cores {cpu_model()} (load {load:.1f})"
    return f"{cpu}, {ram_gib():.0f} GiB RAM, {where}"


def versions(packages: Sequence[str]) -> str:
    """``Python 3.11.7, torch 2.14.1, ...`` for the installed distributions among ``packages``."""
    parts = [f"Python {platform.python_version()}"]
    for name in packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            parts.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(parts)


def header(packages: Sequence[str] = ("vin-ocr",)) -> str:
    """The first words of a recorded entry: date (UTC), machine and versions."""
    return f"{datetime.now(UTC):%Y-%m-%d}, {machine()}, {versions(packages)}"


# -- time and memory -----------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass(frozen=True)
class Timing:
    """Wall seconds of ``n`` timed calls (after the warm-up ones)."""

    seconds: list[float]

    @property
    def n(self) -> int:
        return len(self.seconds)

    @property
    def total(self) -> float:
        return sum(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def per_second(self, items_per_call: float = 1.0) -> float:
        """Items per second over all timed calls."""
        return items_per_call * self.n / self.total if self.total > 0 else float("inf")


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``n`` times timed."""
    if n < 1:
        raise ValueError(f"need at least one timed call, got n={n}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return Timing(seconds)


def _cuda_in_use(device: str) -> bool:
    if not device.startswith("cuda"):
        return False
    import torch

    return torch.cuda.is_available()


def reset_peak_memory(device: str = "cpu") -> None:
    """Start a new peak: CUDA's allocator statistics, or this process's peak RSS (Linux: writing
    5 to ``/proc/self/clear_refs`` resets ``VmHWM`` to the current RSS; elsewhere the peak stays
    the process's lifetime peak)."""
    if _cuda_in_use(device):
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):  # not Linux, or not allowed
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_gib(device: str = "cpu") -> float:
    """Peak memory since :func:`reset_peak_memory`: allocated CUDA memory on a GPU, else the
    whole process's peak RSS (Python, torch and the model included)."""
    if _cuda_in_use(device):
        import torch

        return torch.cuda.max_memory_allocated() / GIB
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / GIB if sys.platform == "darwin" else peak * 1024 / GIB


# -- scoring ---------------------------------------------------------------------------------------


def score(truths: Sequence[str], answers: Sequence[str]) -> dict[str, float]:
    """``exact_match`` (the answer, cleaned of surrounding whitespace and case, equals the truth),
    ``exact_match_lenient`` (a VIN found somewhere in it does) and corpus ``cer``: the harness's
    definitions (:data:`vin_ocr.evaluation.metric.DEFINITIONS`), so a benchmark's figures and an
    evaluation's mean the same.

    >>> s = score(["1M8GDM9AXKP042788"] * 2, ["1M8GDM9AXKP042788", "VIN 1M8GDM9AXKP042788"])
    >>> s["exact_match"], s["exact_match_lenient"], round(s["cer"], 4)
    (0.5, 1.0, 0.1176)
    """
    from vin_ocr.evaluation.metric import VinMetric

    if not truths:
        raise ValueError("score: no answers to score")
    metric = VinMetric()
    for truth, answer in zip(truths, answers, strict=True):
        metric.update(truth, answer)
    summary = metric.summary()
    return {k: summary[k] for k in ("exact_match", "exact_match_lenient", "cer")}


# -- docs/benchmarks.md ------------------------------------------------------------------------


def record(entry: str, section: str, path: str | Path = BENCHMARKS_MD, intro: str = "") -> Path:
    """Append ``entry`` (Markdown, one or more lines) at the end of the section whose heading line
    is ``section`` (e.g. ``## Synthetic data``) in ``path``. A missing file or section is created
    (the section at the end, with ``intro`` under its heading). A multi-line entry is set off by a
    blank line; one-line entries follow each other as a list. The file is re-read right before the
    write and replaced atomically, so other sections (other writers') are kept as they are."""
    path = Path(path)
    entry_lines = entry.strip("\n").split("\n")
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    lines = text.rstrip("\n").split("\n")
    if section not in lines:
        lines += ["", section, ""]
        if intro:
            lines += [*intro.strip("\n").split("\n"), ""]
        lines += entry_lines
    else:
        start = lines.index(section) + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
        while end > start and not lines[end - 1].strip():
            end -= 1
        previous = lines[end - 1] if end > start else section
        joined = len(entry_lines) == 1 and previous.startswith("- ")
        lines[end:end] = entry_lines if joined else ["", *entry_lines]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "", left: int = 1
) -> str:
    """A Markdown table: the first ``left`` columns left-aligned, the others (figures) right."""
    align = ["---"] * left + ["---:"] * (len(headers) - left)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(indent + line for line in out)
