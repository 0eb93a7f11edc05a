"""Hub push: the staged folder (dry run), one commit through an injected HfApi, the failures
(no token, no network, a repo holding something else), and the token never written or logged."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from vin_ocr.hub.push import HubError, push_run, stage

pytestmark = pytest.mark.slow  # the shared training run (~20 s) comes first

FAKE_TOKEN = "hf_FAKEtoken0123456789abcdefghijKLMNOP"
MERGED = [
    "README.md", "config.yaml", "eval/crops/per_position.png",
    "eval/crops/predictions.jsonl", "eval/crops/report.json", "eval/crops/report.md",
    "model/config.json", "model/model.safetensors", "model/preprocessor_config.json", "run.json",
]  # fmt: skip


class FakeApi:
    """Records what ``push_run`` asks of ``HfApi``; ``remote`` maps repo paths to contents."""

    def __init__(self, tmp: Path, remote: dict[str, str] | None = None):
        self.tmp, self.remote = tmp, dict(remote or {})
        self.calls: list[str] = []
        self.commits: list[dict] = []

    def create_repo(self, repo_id, private, exist_ok, repo_type):
        self.calls.append(f"create_repo {repo_id} private={private} exist_ok={exist_ok}")

    def list_repo_files(self, repo_id, repo_type):
        return [".gitattributes", *self.remote]

    def hf_hub_download(self, repo_id, filename, repo_type):
        path = self.tmp / "download" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.remote[filename])
        return str(path)

    def create_commit(self, repo_id, operations, commit_message, repo_type):
        adds = {op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations
                if type(op).__name__ == "CommitOperationAdd"}  # fmt: skip
        deletes = [
            op.path_in_repo for op in operations if type(op).__name__ != "CommitOperationAdd"
        ]
        self.commits.append({"repo": repo_id, "adds": adds, "deletes": deletes,
                             "message": commit_message})  # fmt: skip
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/1"})()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_dry_run_writes_the_exact_upload_folder(trained_run, tmp_path, capsys):
    before = snapshot(trained_run)
    out = tmp_path / "staged"
    conf = {"dry_run": True, "repo_id": "acme/vin-reader", "staging_dir": str(out)}
    result = push_run(trained_run, conf)
    assert result.staged == out and result.files == MERGED
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == MERGED
    assert f"is {out}" in capsys.readouterr().out
    assert snapshot(trained_run) == before  # the run folder is untouched
    for name in ("model/model.safetensors", "eval/crops/report.json"):
        assert (out / name).read_bytes() == (trained_run / name).read_bytes()
    info = json.loads((out / "run.json").read_text())
    assert info["hub"] == {"repo_id": "acme/vin-reader", "upload": "merged"}
    assert 'snapshot_download("acme/vin-reader")' in (out / "README.md").read_text()
    adapter = stage(trained_run, push_conf(upload="adapter"), tmp_path / "adapter")
    assert "model/adapter/adapter_model.safetensors" in adapter
    assert "model/model.safetensors" not in adapter and "model/preprocessor_config.json" in adapter


def push_conf(**values):
    from vin_ocr.hub.push import hub_conf

    return hub_conf({"repo_id": "acme/vin-reader", **values})


def test_push_is_one_commit_of_the_staged_files(trained_run, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    api = FakeApi(tmp_path)
    before = snapshot(trained_run)
    with caplog.at_level(logging.DEBUG):
        result = push_run(trained_run, push_conf(push=True, private=True), api=api)
    assert api.calls == ["create_repo acme/vin-reader private=True exist_ok=True"]
    [commit] = api.commits
    assert sorted(commit["adds"]) == MERGED == result.files and commit["deletes"] == []
    assert (
        commit["adds"]["model/model.safetensors"]
        == (trained_run / "model/model.safetensors").read_bytes()
    )
    assert commit["message"] == f"vin-ocr: {trained_run.name}"
    assert snapshot(trained_run) == before
    # pushing again to our own repo: accepted, files no longer produced are deleted
    remote = {name: data.decode("utf-8", "replace") for name, data in commit["adds"].items()}
    again = FakeApi(tmp_path, {**remote, "eval/old/report.json": "{}"})
    push_run(trained_run, push_conf(push=True), api=again)
    assert again.commits[0]["deletes"] == ["eval/old/report.json"]
    assert FAKE_TOKEN not in caplog.text


def test_a_repo_with_other_content_is_refused_unless_overwrite(trained_run, tmp_path):
    foreign = {"README.md": "# someone's model\n", "pytorch_model.bin": "x", "run.json": "{}"}
    api = FakeApi(tmp_path, foreign)
    with pytest.raises(HubError, match=r"already holds other content.*hub\.overwrite=true"):
        push_run(trained_run, push_conf(push=True), api=api)
    assert api.commits == []
    ours = json.loads((trained_run / "run.json").read_text())
    other_model = {"README.md": "tags: [vin-ocr]", "run.json": json.dumps({**ours, "family": "x"})}
    with pytest.raises(HubError, match="holds another model"):
        push_run(trained_run, push_conf(push=True), api=FakeApi(tmp_path, other_model))
    api = FakeApi(tmp_path, foreign)
    push_run(trained_run, push_conf(push=True, overwrite=True), api=api)
    assert api.commits[0]["deletes"] == ["pytorch_model.bin"]


def test_no_token_and_no_network_end_clearly_and_keep_the_run(trained_run, monkeypatch, capsys):
    before = snapshot(trained_run)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(HubError, match="no Hugging Face token: set HF_TOKEN"):
        push_run(trained_run, push_conf(push=True))
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)  # a token, but the Hub is unreachable (offline)
    with pytest.raises(HubError, match=r"push to acme/vin-reader failed .* is intact") as err:
        push_run(trained_run, push_conf(push=True))
    assert FAKE_TOKEN not in str(err.value) and FAKE_TOKEN not in str(capsys.readouterr())
    with pytest.raises(HubError, match="must be org/name"):
        push_run(trained_run, push_conf(push=True, repo_id="no-org"))
    with pytest.raises(HubError, match=r"hub config: .*upload_weights"):
        push_run(trained_run, {"upload_weights": True})
    assert snapshot(trained_run) == before


def test_secrets_are_not_staged(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["logger"] = {"name": "wandb", "api_key": FAKE_TOKEN, "project": "vin"}
    config["hub"]["token"] = FAKE_TOKEN
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "staged"
    push_run(run, {"dry_run": True, "staging_dir": str(out)})
    staged = yaml.safe_load((out / "config.yaml").read_text())
    assert staged["logger"] == {"name": "wandb", "project": "vin"}
    assert "token" not in staged["hub"] and staged["training"] == config["training"]
    for path in out.rglob("*"):
        if path.is_file():
            assert FAKE_TOKEN.encode() not in path.read_bytes(), path


def fake_hub(monkeypatch, tmp_path) -> list[FakeApi]:
    """Make ``huggingface_hub.HfApi(token=...)`` build a FakeApi (what push_run does by default);
    returns the list of APIs built."""
    import huggingface_hub

    built: list[FakeApi] = []

    def make(token=None):
        assert token == FAKE_TOKEN
        built.append(FakeApi(tmp_path))
        return built[-1]

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(huggingface_hub, "HfApi", make)
    return built


def merge_cfg(*overrides):
    from hydra import compose, initialize_config_dir

    import vin_ocr

    with initialize_config_dir(str(vin_ocr.CONFIG_DIR), version_base="1.3"):
        return compose("merge", overrides=["hardware.device=cpu", "verify.samples=2", *overrides])


def test_training_pushes_at_the_end(tmp_path, monkeypatch, make_run):
    """``hub.push=true`` at the end of a real training run: one commit of the finished run."""
    built = fake_hub(monkeypatch, tmp_path)
    run, result = make_run(tmp_path, "pushed", "hub.push=true", "hub.repo_id=acme/vin-reader")
    [api] = built
    [commit] = api.commits
    assert commit["repo"] == "acme/vin-reader" and sorted(commit["adds"]) == MERGED
    assert commit["adds"]["run.json"] and (run / "run.json").is_file()
    assert (
        commit["adds"]["model/model.safetensors"] == (run / "model/model.safetensors").read_bytes()
    )
    assert "hub" not in result.artefacts  # pushed, not staged


def test_merge_then_push_and_dry_run(trained_run, tmp_path, monkeypatch):
    """``hub.push`` / ``hub.dry_run`` after a merge publish the merged folder, not the run."""
    from vin_ocr.training.merge import merge

    built = fake_hub(monkeypatch, tmp_path)
    before = snapshot(trained_run)
    out = tmp_path / "merged"
    result = merge(merge_cfg(f"run={trained_run}", f"out={out}", "hub.push=true",
                             "hub.repo_id=acme/vin-merged"))  # fmt: skip
    [api] = built
    [commit] = api.commits
    assert commit["repo"] == "acme/vin-merged" and result.pushed.files == sorted(commit["adds"])
    assert (
        commit["adds"]["model/model.safetensors"] == (out / "model/model.safetensors").read_bytes()
    )
    assert "## Merge" in commit["adds"]["README.md"].decode()
    staged = merge(merge_cfg(f"run={trained_run}", f"out={tmp_path / 'm2'}", "hub.dry_run=true"))
    assert staged.pushed.staged == tmp_path / "m2" / "hub_upload"
    assert sorted(staged.pushed.files) == sorted(commit["adds"]) and len(built) == 1
    assert snapshot(trained_run) == before


def test_a_full_fine_tune_is_pushed_as_it_is(full_run, tmp_path, monkeypatch, capsys):
    """docs/publishing.md: the merge CLI publishes a full (non-LoRA) fine-tune, with its card."""
    from vin_ocr.training.merge import merge

    assert not (full_run / "model" / "adapter").exists()
    built = fake_hub(monkeypatch, tmp_path)
    before = snapshot(full_run)
    result = merge(merge_cfg(f"run={full_run}", "hub.push=true", "hub.repo_id=acme/vin-full"))
    [commit] = built[0].commits
    assert sorted(commit["adds"]) == MERGED and result.verification is None
    assert (
        commit["adds"]["model/model.safetensors"]
        == (full_run / "model/model.safetensors").read_bytes()
    )
    card = commit["adds"]["README.md"].decode()
    assert "acme/vin-full" in card and "merged-lora" not in card
    assert "published as it is" in capsys.readouterr().out
    assert snapshot(full_run) == before
