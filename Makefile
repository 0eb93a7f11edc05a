# vin-ocr: every target sets up .venv on first use (torch pinned first; see README).
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
# torch 2.14.1 + torchvision 0.29.1 are the pair that import together here. From PyPI this is
# the CUDA build (2.14.1+cu130, ~3 GB of nvidia-* wheels, also on a CPU-only machine; it runs on
# the CPU). For CPU-only wheels, where PyTorch's index is reachable:
#   make TORCH_INDEX=https://download.pytorch.org/whl/cpu setup
TORCH    = torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=
STAMP    = $(VENV)/.installed
# The official paddleocr engine (the [paddle] extra holds paddlepaddle and their other needs): its
# metadata pins numpy<2.4 and opencv 4.10, which would downgrade ours; it runs on them (tested).
PADDLEOCR = paddleocr==3.7.0 paddlex==3.7.2

.PHONY: setup run eval test lint format bench bench-default bench-real system-deps clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[dev,paddle]" $(TORCH)
	$(BIN)/pip install -q --no-deps $(PADDLEOCR)
	touch $(STAMP)

setup: $(STAMP)

## The main job on its embedded default (no GPU, no Hub): fine-tune PP-OCRv6-small on synthetic VINs.
run: $(STAMP)
	$(BIN)/python -m vin_ocr.training.hf_finetune

## The evaluation harness on the bundled samples (the pretrained RapidOCR baseline).
eval: $(STAMP)
	$(BIN)/python -m vin_ocr.evaluation.evaluate

## Lint, then the whole test suite.
test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check vin_ocr tests scripts stubs
	$(BIN)/ruff format --check vin_ocr tests scripts stubs
	$(BIN)/mypy vin_ocr

format: $(STAMP)
	$(BIN)/ruff format vin_ocr tests scripts stubs
	$(BIN)/ruff check --fix vin_ocr tests scripts stubs

## CPU benchmarks (about 3.5 minutes on 2 idle cores, under 10): renderer, training, inference;
## each script appends a dated entry to docs/benchmarks.md (see docs/benchmarks.md).
bench: $(STAMP)
	$(BIN)/python scripts/bench_synth.py
	$(BIN)/python scripts/bench_train.py
	$(BIN)/python scripts/bench_infer.py

## The embedded default run (`make run`) as a benchmark, ~9 minutes: wall time and its targets.
bench-default: $(STAMP)
	$(BIN)/python scripts/bench_default.py

## Real photos: the pretrained pipeline vs the default fine-tune on the 50 real dev photos of
## ../shared/vin-detection, three readings (trains the default first; RUN=folder to reuse a run).
bench-real: $(STAMP)
	$(BIN)/python scripts/bench_real.py $(if $(RUN),run=$(RUN))

## Optional system packages (Debian/Ubuntu, as root): Tesseract baseline, extra fonts, and the
## Chromium the demo app's browser test drives through Playwright (never `playwright install`).
system-deps:
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends tesseract-ocr fonts-dejavu-core \
	  fonts-liberation fonts-freefont-ttf fonts-ocr-a fonts-ocr-b chromium

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
