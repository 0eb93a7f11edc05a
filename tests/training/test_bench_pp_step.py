"""scripts/bench_pp_step.py end to end on the real PP-OCR model (quick: two variants, two steps)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_pp_step.py"


def test_quick_run_records_both_variants_with_finite_losses(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "quick=true", f"out={out}"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "## PP-OCR training step, setting by setting" in text and ", quick." in text
    rows = [ln for ln in text.splitlines() if ln.startswith("  | fp32") or "| cl_bf16 |" in ln]
    assert len(rows) == 2 and "failed" not in text
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert float(cells[1]) > 0 and all(math.isfinite(float(x)) for x in cells[4].split(", "))


def test_unknown_variant_is_refused():
    proc = subprocess.run([sys.executable, str(SCRIPT), "variants=[fp64]", "record=false"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode != 0 and "unknown variant(s) ['fp64']" in proc.stderr
