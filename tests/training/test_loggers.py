"""The W&B logger on a tiny training run, offline; the sweep spec; reading W&B runs in compare.

The offline run is read back from its ``.wandb`` file (a LevelDB-style log of protobuf records,
the format ``wandb sync`` uploads)."""

from __future__ import annotations

import json
import logging
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import vin_ocr
import vin_ocr.training.hf_finetune  # registers the schemas train.yaml uses
from vin_ocr.training import loggers
from vin_ocr.training.loggers import (
    NullLogger,
    WandbLogger,
    build_logger,
    scrub_secrets,
    worst_predictions,
)

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2 as pb  # noqa: E402

TINY = ["model.tiny=true", "hardware.device=cpu"]
SWEEP = vin_ocr.CONFIG_DIR / "sweep" / "lfm2_vl_lora.yaml"


def _cfg(overrides: list[str]):
    with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def read_records(path: Path) -> list[Any]:
    """The protobuf records of a ``.wandb`` file: a 7-byte header (":W&B", magic, version),
    then LevelDB log records (crc32, length, type) in 32 KiB blocks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, pending, out = 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # a record still being written
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # FULL
            out.append(pb.Record.FromString(chunk))
        elif kind in (2, 3):  # FIRST, MIDDLE
            pending = chunk if kind == 2 else pending + chunk
        elif kind == 4:  # LAST
            out.append(pb.Record.FromString(pending + chunk))
    return out


def finished_run_file(wandb_dir: Path, timeout_s: float = 60.0) -> Path:
    """The one offline run's ``.wandb`` file once it holds the exit record: W&B's service
    process writes the file asynchronously and may still be writing when ``finish`` returns."""
    (path,) = Path(wandb_dir).glob("offline-run-*/run-*.wandb")
    deadline = time.monotonic() + timeout_s
    while not any(r.WhichOneof("record_type") == "exit" for r in read_records(path)):
        assert time.monotonic() < deadline, f"{path}: no exit record after {timeout_s} s"
        time.sleep(0.1)
    return path


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def parse_run(path: Path) -> dict[str, Any]:
    """Config, history rows, final summary and artifacts of an offline run."""
    run: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "artifacts": [], "argv": []}
    for rec in read_records(path):
        kind = rec.WhichOneof("record_type")
        if kind in ("run", "config"):  # the config comes with the run record, or after it
            updates = rec.run.config.update if kind == "run" else rec.config.update
            run["config"].update({u.key: json.loads(u.value_json) for u in updates})
        elif kind == "history":
            run["history"].append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            run["summary"].update({_key(u): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "artifact":
            run["artifacts"].append(rec.artifact)
        elif kind == "environment":
            run["argv"] += list(rec.environment.args)
    return run


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> dict[str, Any]:
    """A tiny 2-step PP-OCR LoRA run with logger=wandb and no API key (mode auto). Its test set,
    ``samples``, is 12 bundled line crops: the 28 bundled scenes would add two detector passes
    (~45 s of CPU) and nothing the logger does differently."""
    from vin_ocr.data.sample import read_manifest, write_manifest
    from vin_ocr.training.hf_finetune import train

    root = tmp_path_factory.mktemp("wandb_run")
    crops = [s for s in read_manifest(vin_ocr.SAMPLES_DIR / "manifest.jsonl") if s.crop][:12]
    (root / "test").mkdir()
    test_set = write_manifest(crops, root / "test" / "samples.jsonl")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
    log = logging.getLogger("vin_ocr.training.loggers")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root / "home"))
        mp.setenv("WANDB_DIR", str(root / "wb"))
        for var in ("WANDB_MODE", "WANDB_API_KEY", "NETRC"):
            mp.delenv(var, raising=False)
        overrides = [*TINY, "debug=smoke", "training=lora", "training.log_every=1"]
        cfg = _cfg([*overrides, "logger=wandb", f"run_dir={root / 'run'}", "export_onnx=false",
                    f"data.test=[{test_set}]"])  # fmt: skip
        result = train(cfg)
    log.removeHandler(handler)
    wandb_file = finished_run_file(root / "wb" / "wandb")
    return {"result": result, "file": wandb_file, "log": records, **parse_run(wandb_file)}


@pytest.mark.slow
def test_offline_run_holds_config_history_metrics_table_and_adapter(offline_run):
    run_dir = offline_run["result"].run_dir
    config = offline_run["config"]
    assert config["model"]["name"] == "pp_ocr" and config["model"]["tiny"] is True
    assert config["training"]["method"] == "lora" and config["logger"]["mode"] == "auto"
    assert config["machine"]["device"] == "cpu" and config["machine"]["cpu_count"] >= 1

    # per-step loss and throughput: the values of the run's own metrics.jsonl, step by step
    logged = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in logged if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2]
    history = {h["_step"]: h for h in offline_run["history"]}
    for r in train_rows:
        assert history[r["step"]]["train/loss"] == pytest.approx(r["train/loss"])
        assert history[r["step"]]["train/samples_per_s"] > 0
    assert {0, 2} <= {s for s, h in history.items() if "val/exact_match" in h}

    # eval metrics: the test report's figures, in the summary
    report = json.loads((run_dir / "eval" / "samples" / "report.json").read_text())
    summary = offline_run["summary"]
    for key in ("exact_match", "char_accuracy", "cer", "n", "per_position"):
        assert summary[f"eval/samples/{key}"] == pytest.approx(report[key]), key
    best = offline_run["result"].metrics["val"]["exact_match"]
    assert summary["val/exact_match"] == {"max": pytest.approx(best)}

    # the worst predictions, with their images, as a table artifact; the adapter as a model
    predictions = run_dir / "eval" / "samples" / "predictions.jsonl"
    wrong = worst_predictions({**report, "files": {"predictions": str(predictions)}})
    assert wrong and all(not r["exact"] for r in wrong)
    by_type = {a.type: a for a in offline_run["artifacts"]}
    table = by_type["run_table"]
    paths = [c.path for c in table.manifest.contents]
    assert "eval/samples/worst.table.json" in paths
    assert sum(p.startswith("media/images/") for p in paths) == min(16, len(wrong))
    (table_json,) = offline_run["file"].parent.glob("files/media/table/eval/samples/worst_*.json")
    rows = json.loads(table_json.read_text())
    assert rows["columns"] == ["image", "truth", "prediction", "raw", "cer", "valid"]
    assert [r[1] for r in rows["data"]] == [r["truth"] for r in wrong[:16]]
    model = by_type["model"]
    files = {c.path for c in model.manifest.contents}
    assert {"adapter_model.safetensors", "adapter_config.json"} <= files
    size = (run_dir / "model" / "adapter" / "adapter_model.safetensors").stat().st_size
    assert {c.path: c.size for c in model.manifest.contents}["adapter_model.safetensors"] == size


@pytest.mark.slow
def test_auto_mode_without_key_runs_offline_and_says_where(offline_run):
    sync_dir = offline_run["file"].parent
    lines = [m for m in offline_run["log"] if m.startswith("W&B:")]
    assert len(lines) == 1
    assert "no W&B API key" in lines[0] and f"wandb sync {sync_dir}" in lines[0]


def test_secrets_never_reach_wandb(tmp_path, monkeypatch):
    hf = "hf_" + "A1b2C3d4E5" * 4
    key = "0123456789abcdef" * 2 + "01234567"
    monkeypatch.setenv("HF_TOKEN", hf)
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setattr(sys, "argv", ["train", f"+hub.token={hf}", "logger=wandb"])
    logger = WandbLogger(mode="offline", dir=str(tmp_path))
    config = {
        "hub": {"token": "secret-value-1", "repo_id": "me/vin"},
        "model": {"max_new_tokens": 24, "revision": "a" * 40},
        "note": f"https://x.test/?t={hf}",
        "wandb_api_key": key,
    }
    logger.start(config, {"device": "cpu"})
    logger.log({"train/loss": 1.0}, 1)
    logger.finish()
    assert sys.argv[1] == f"+hub.token={hf}"  # restored after wandb.init
    wandb_file = finished_run_file(tmp_path / "wandb")
    run = parse_run(wandb_file)
    assert run["config"]["hub"] == {"token": "***", "repo_id": "me/vin"}
    assert run["config"]["model"] == {"max_new_tokens": 24, "revision": "a" * 40}
    assert run["config"]["note"] == "https://x.test/?t=***"
    assert "+hub.token=***" in run["argv"]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (hf, key, "secret-value-1"):
                assert secret.encode() not in data, (path, secret)


def test_scrub_keeps_token_counts_and_finds_secret_keys():
    cfg = {
        "training": {"max_length": 64, "lora": {"r": 8}},
        "model": {"max_image_tokens": 256, "min_image_tokens": 64},
        "hf_token": "x",
        "api_key": "y",
        "aws": {"secret": "z", "access_key": "w"},
        "empty_token": None,
        "tags": ["a", "hf_" + "z" * 30],
    }
    out = scrub_secrets(cfg, secrets=[])
    assert out["training"] == cfg["training"] and out["model"] == cfg["model"]
    assert out["hf_token"] == out["api_key"] == "***"
    assert out["aws"] == {"secret": "***", "access_key": "***"}
    assert out["empty_token"] is None and out["tags"] == ["a", "***"]


def test_logger_config_group(tmp_path):
    cfg = _cfg(TINY)
    assert cfg.logger._target_ == "vin_ocr.training.loggers.NullLogger"
    assert isinstance(build_logger(cfg.logger, tmp_path), NullLogger)
    wb = _cfg([*TINY, "logger=wandb", "logger.project=p", "logger.tags=[a,b]"]).logger
    assert isinstance(build_logger(wb, tmp_path, is_main=False), NullLogger)  # main process only
    built = build_logger(wb, tmp_path)
    assert isinstance(built, WandbLogger) and built.project == "p" and built.tags == ["a", "b"]
    with pytest.raises(ConfigCompositionException, match="projet"):
        _cfg([*TINY, "logger=wandb", "logger.projet=p"])
    with pytest.raises(ConfigCompositionException, match="onlin"):
        _cfg([*TINY, "logger=wandb", "logger.mode=onlin"])
    with pytest.raises(ValueError, match="expected one of auto, online, offline"):
        WandbLogger(mode="onlin")


def test_online_without_key_stops_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert not loggers.wandb_api_key_available()
    with pytest.raises(RuntimeError, match="no W&B API key was found: set WANDB_API_KEY"):
        WandbLogger(mode="online", dir=str(tmp_path)).start({}, {})
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password " + "k" * 40)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert loggers.wandb_api_key_available()


# --------------------------------------------------------------------------- the sweep spec
def test_sweep_parameters_are_train_overrides():
    """W&B's own argument expansion of the spec, composed against train.yaml: a renamed or
    removed key fails here."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    spec = yaml.safe_load(SWEEP.read_text())
    assert spec["method"] in ("bayes", "random", "grid")
    assert set(spec["parameters"]) == {
        "training.lora.r",
        "training.learning_rate",
        "model.max_image_tokens",
    }
    command = spec["command"]
    assert command[2:4] == ["-m", "vin_ocr.training.hf_finetune"]
    assert "${args_no_hyphens}" in command
    fixed = [c for c in command[4:] if not c.startswith("${")]
    for pick in (0, -1):
        args = {}
        for name, p in spec["parameters"].items():
            value = p["values"][pick] if "values" in p else (p["min"], p["max"])[pick]
            args[name] = {"value": value}
        overrides = create_sweep_command_args({"args": args})["args_no_hyphens"]
        cfg = _cfg([*fixed, *overrides])
        assert cfg.logger._target_.endswith("WandbLogger")
        for name, arg in args.items():
            node = cfg
            for part in name.split("."):
                node = node[part]
            assert node == pytest.approx(arg["value"]), name


@pytest.mark.slow
def test_sweep_metric_is_logged(offline_run):
    spec = yaml.safe_load(SWEEP.read_text())
    name = spec["metric"]["name"]
    assert any(name in h for h in offline_run["history"])
    goal = {"maximize": "max", "minimize": "min"}[spec["metric"]["goal"]]
    assert set(offline_run["summary"][name]) == {goal}  # the summary keeps the best value


# --------------------------------------------------------------------------- compare reads W&B
class _Api:
    """``wandb.Api`` as compare uses it (``run``, ``runs``), over runs given in the test."""

    def __init__(self, runs):
        self._runs = runs

    def run(self, path):
        return next(r for r in self._runs if path.endswith("/" + r.id))

    def runs(self, path, order="-created_at"):
        return iter(self._runs)


@pytest.mark.slow
def test_compare_reads_what_the_logger_logged(offline_run, tmp_path):
    from vin_ocr.evaluation.compare import build_comparison

    logged = SimpleNamespace(id="abc123", name="tiny-lora", summary_metrics=offline_run["summary"])
    other = SimpleNamespace(id="def456", name="no-eval", summary_metrics={"train/loss": 1.0})
    api = _Api([logged, other])
    run_dir = offline_run["result"].run_dir
    cmp = build_comparison([str(run_dir), "wandb:me/vin-ocr"], tmp_path / "c.md", api=api)
    assert [r.label for r in cmp.runs] == ["pp_ocr:finetuned", "tiny-lora"]
    assert cmp.runs[1].source == "wandb:me/vin-ocr/abc123"  # the run without eval is skipped
    local, remote = (r.sets["samples"] for r in cmp.runs)
    for key in ("exact_match", "cer", "per_position", "n"):
        assert remote[key] == pytest.approx(local[key])
    one = build_comparison(["wandb:me/vin-ocr/abc123"], api=api)
    assert one.runs[0].sets["samples"]["exact_match"] == local["exact_match"]
    with pytest.raises(ValueError, match="run def456 has no test metrics"):
        build_comparison(["wandb:me/vin-ocr/def456"], api=api)
