"""The Hub path end to end: the real huggingface_hub client against tests/hub_server.py."""
from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest
import torch
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from safetensors.torch import save_file
from tiny_models import TinyConfig, TinyModel, outputs, tiny

import genzoo
from genzoo.hub import build_model_card
from genzoo.registry import _REGISTRY, register

CHECKPOINT = {".gitattributes", "config.json", "model.safetensors", "README.md"}
_ids = itertools.count()


def new_repo() -> str:
    return f"tester/tiny-{os.getpid()}-{next(_ids)}"


def set_offline(monkeypatch, offline: bool) -> None:
    """What HF_HUB_OFFLINE=1 does once huggingface_hub is imported (genzoo reads the same flag)."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", offline)


@pytest.fixture
def temp_entry():
    """``make(name, hub_id, ...)`` registers a TinyModel entry, removed again at teardown."""
    names = []

    def make(name, hub_id, **kw):
        names.append(name)
        return register(name, TinyModel, TinyConfig(), hub_id=hub_id, dataset="fashion-mnist", **kw)

    yield make
    for n in names:
        _REGISTRY.pop(n, None)


def test_server_speaks_the_protocol(hub):
    repo = new_repo()
    HfApi().create_repo(repo)
    HfApi().create_repo(repo, exist_ok=True)  # 409 carrying "url"
    assert HfApi().list_repo_files(repo) == [".gitattributes"]  # the Hub's initial commit
    sha = tiny(1).push_to_hub(repo)
    assert len(sha) == 40 and int(sha, 16) >= 0
    info = HfApi().model_info(repo)
    assert info.sha == sha and {s.rfilename for s in info.siblings} == CHECKPOINT
    path = Path(hf_hub_download(repo, "config.json"))
    data = path.read_bytes()
    assert path.parent.name == sha  # snapshots/<sha>/config.json → blobs/<sha256 of content>
    assert path.resolve().name == hashlib.sha256(data).hexdigest()
    assert hub.requests()[-2:] == [("HEAD", f"/{repo}/resolve/main/config.json"),
                                   ("GET", f"/{repo}/resolve/main/config.json")]
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, "nope.bin")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, "config.json", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("tester/no-such-repo", "config.json")
    history = hub.repos[repo].history("main")  # initial commit + the push, chained by parent
    assert [c.parent for c in history] == [history[1].sha, None]
    assert all(".gitattributes" in c.files for c in history)


def test_push_and_load(hub):
    repo = new_repo()
    m = tiny(1, hidden=(5,), activation="tanh")
    sha = m.push_to_hub(repo)
    assert set(HfApi().list_repo_files(repo)) == CHECKPOINT
    assert ("POST", f"/api/models/{repo}/commit/main") in hub.requests()
    assert hub.repos[repo].resolve("main").sha == sha
    loaded = TinyModel.from_pretrained(repo)
    assert not loaded.training and type(loaded) is TinyModel
    assert loaded.config == m.config and isinstance(loaded.config.hidden, tuple)
    assert torch.equal(outputs(loaded), outputs(m))
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_revisions_branch_tag_sha(hub):
    repo = new_repo()
    v1, v2, v3 = tiny(1), tiny(2), tiny(3)
    sha1 = v1.push_to_hub(repo)
    api = HfApi()
    api.create_tag(repo, tag="v1", revision=sha1)
    sha2 = v2.push_to_hub(repo)
    sha3 = v3.push_to_hub(repo, revision="dev")
    assert len({sha1, sha2, sha3}) == 3
    refs = api.list_repo_refs(repo)
    assert {b.name for b in refs.branches} == {"main", "dev"} and [t.name for t in refs.tags] == ["v1"]
    assert not torch.equal(outputs(v1), outputs(v2))
    assert torch.equal(outputs(genzoo.load(repo, revision="v1")), outputs(v1))
    assert torch.equal(outputs(genzoo.load(repo, revision=sha1)), outputs(v1))
    assert torch.equal(outputs(genzoo.load(repo)), outputs(v2))
    assert torch.equal(outputs(genzoo.load(repo, revision="main")), outputs(v2))
    assert torch.equal(outputs(genzoo.load(repo, revision=sha2)), outputs(v2))
    assert torch.equal(outputs(TinyModel.from_pretrained(repo, revision="dev")), outputs(v3))
    assert torch.equal(outputs(genzoo.load(repo, revision=sha3)), outputs(v3))


def test_push_to_a_branch_of_a_new_repo(hub):
    repo = new_repo()
    m = tiny(9)
    m.push_to_hub(repo, revision="experiment")
    assert torch.equal(outputs(genzoo.load(repo, revision="experiment")), outputs(m))
    with pytest.raises(genzoo.CheckpointError, match="no config.json"):  # main holds only .gitattributes
        genzoo.load(repo)


def test_cache_hits_make_zero_requests(hub, monkeypatch):
    repo = new_repo()
    m = tiny(4)
    sha = m.push_to_hub(repo)
    genzoo.load(repo, revision=sha)
    genzoo.load(repo)
    assert any("/resolve/" in p for _, p in hub.requests()), "the first loads must download"
    hub.clear()
    # a pinned sha and the cached main come from the cache with no request at all
    assert torch.equal(outputs(genzoo.load(repo, revision=sha)), outputs(m))
    assert torch.equal(outputs(genzoo.load(repo)), outputs(m))
    assert hub.requests() == []
    set_offline(monkeypatch, True)
    assert torch.equal(outputs(genzoo.load(repo)), outputs(m))
    assert torch.equal(outputs(TinyModel.from_pretrained(repo, revision=sha)), outputs(m))
    assert hub.requests() == []


def test_offline_env_var_in_a_fresh_process(hub, tmp_path):
    repo = new_repo()
    m = tiny(10)
    sha = m.push_to_hub(repo)
    genzoo.load(repo, revision=sha)
    save_file({"x": outputs(m)}, tmp_path / "expected.safetensors")
    hub.clear()
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import tiny_models, genzoo\n"
        "from safetensors.torch import load_file\n"
        "m = genzoo.load(sys.argv[2], revision=sys.argv[3])\n"
        "assert torch.equal(tiny_models.outputs(m), load_file(sys.argv[4])['x'])\n"
        "try:\n    genzoo.load('tester/never-downloaded')\nexcept genzoo.CheckpointNotFoundError as e:\n"
        "    assert 'offline' in str(e), e\nelse:\n    raise SystemExit('offline load of an uncached repo worked')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), repo, sha,
                        str(tmp_path / "expected.safetensors")], env=env, cwd=Path(__file__).parents[1],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert hub.requests() == []


def test_offline_without_cache_fails_clearly(hub, monkeypatch):
    set_offline(monkeypatch, True)
    with pytest.raises(genzoo.CheckpointNotFoundError, match="offline") as e:
        genzoo.load("tester/never-downloaded")
    assert "Hub cache" in str(e.value)
    assert hub.requests() == []


def test_not_found_errors(hub):
    with pytest.raises(genzoo.CheckpointNotFoundError, match="not found") as e:
        genzoo.load("tester/does-not-exist")
    msg = str(e.value)
    assert "Looked in" in msg and "Hub cache" in msg and "the Hub: repo tester/does-not-exist not found" in msg
    repo = new_repo()
    tiny().push_to_hub(repo)
    with pytest.raises(genzoo.CheckpointNotFoundError, match=f"revision 'nope' does not exist in Hub repo {repo}"):
        genzoo.load(repo, revision="nope")
    with pytest.raises(genzoo.CheckpointNotFoundError, match="revision 'nope'"):
        TinyModel.from_pretrained(repo, revision="nope")


def test_registry_name_resolves_cache_then_hub_then_bundled(hub, temp_entry, tmp_path, monkeypatch):
    # 1. on the Hub: downloaded once, then served from the cache with zero requests (online and offline)
    repo = new_repo()
    m = tiny(5)
    m.push_to_hub(repo)
    temp_entry("tiny-hubbed", repo)
    hub.clear()
    assert torch.equal(outputs(genzoo.load("tiny-hubbed")), outputs(m))
    assert any("/resolve/" in p for _, p in hub.requests())
    hub.clear()
    assert torch.equal(outputs(genzoo.load("tiny-hubbed")), outputs(m))
    set_offline(monkeypatch, True)
    assert torch.equal(outputs(genzoo.load("tiny-hubbed")), outputs(m))
    assert hub.requests() == []
    set_offline(monkeypatch, False)
    # 2. not on the Hub: the bundled copy in $GENZOO_MODEL_CARDS/<name>/ is used
    bundled = tiny(6)
    monkeypatch.setenv("GENZOO_MODEL_CARDS", str(tmp_path))
    bundled.save_pretrained(tmp_path / "tiny-bundled")
    temp_entry("tiny-bundled", "tester/not-pushed")
    hub.clear()
    loaded = genzoo.load("tiny-bundled")
    assert torch.equal(outputs(loaded), outputs(bundled)) and not loaded.training
    assert hub.requests(), "the Hub must be asked before falling back to the bundled copy"
    # 2b. the cached Hub copy wins over a bundled copy when both exist
    bundled.save_pretrained(tmp_path / "tiny-hubbed")
    assert torch.equal(outputs(genzoo.load("tiny-hubbed")), outputs(m))
    # a pinned revision never silently falls back to the bundled copy
    with pytest.raises(genzoo.CheckpointNotFoundError, match="revision was pinned"):
        genzoo.load("tiny-bundled", revision="v9")
    # 3. nowhere: the error says where it looked and how to train it
    temp_entry("tiny-nowhere", "tester/not-pushed-either")
    with pytest.raises(genzoo.CheckpointNotFoundError) as e:
        genzoo.load("tiny-nowhere")
    msg = str(e.value)
    assert "Hub cache" in msg and "the Hub: repo tester/not-pushed-either not found" in msg
    assert str(tmp_path / "tiny-nowhere") in msg and "genzoo train tiny-nowhere" in msg


def test_architecture_and_unpublished_errors(temp_entry):
    register("tiny-arch", TinyModel, TinyConfig())
    try:
        with pytest.raises(genzoo.CheckpointNotFoundError, match="architecture without weights") as e:
            genzoo.load("tiny-arch")
        assert "genzoo.create('tiny-arch')" in str(e.value)
    finally:
        _REGISTRY.pop("tiny-arch")
    temp_entry("tiny-paper-preset", "genzoo/tiny-paper-preset", published=False)
    with pytest.raises(genzoo.CheckpointNotFoundError, match="not published yet.*genzoo train tiny-paper-preset"):
        genzoo.load("tiny-paper-preset")


def test_card_metadata_through_the_hub(hub):
    repo = new_repo()
    m = tiny(7)
    card = build_model_card(
        "tiny", m, description="A tiny test model.", dataset="fashion-mnist", license="apache-2.0",
        metrics=[{"type": "bits_per_dim", "name": "bits/dim", "value": 3.25, "protocol": "test"}],
        training={"command": "genzoo train tiny --out x", "seed": 0, "hardware": "CPU", "wall_time_s": 1.0})
    m.push_to_hub(repo, model_card=card)
    assert ("POST", "/api/validate-yaml") in hub.requests()
    data = HfApi().model_info(repo).card_data.to_dict()
    assert data["library_name"] == "genzoo" and data["license"] == "apache-2.0"
    assert data["datasets"] == ["fashion-mnist"] and {"genzoo", "tinymodel"} <= set(data["tags"])
    result = data["model-index"][0]["results"][0]
    assert result["metrics"][0]["type"] == "bits_per_dim" and result["metrics"][0]["value"] == 3.25
    assert result["dataset"]["name"] == "fashion-mnist"
    assert data["genzoo"]["training"]["command"] == "genzoo train tiny --out x"
    # the default card of push_to_hub is valid metadata too
    repo2 = new_repo()
    m.push_to_hub(repo2)
    assert HfApi().model_info(repo2).card_data.to_dict()["library_name"] == "genzoo"


def test_cli_push_refuses_broken_checkpoint(hub, tmp_path):
    from genzoo.cli import main

    good = tmp_path / "good"
    tiny(8).save_pretrained(good)
    repo = new_repo()
    assert main(["push", str(good), repo]) == 0
    assert "model.safetensors" in HfApi().list_repo_files(repo)
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    (bad / "model.safetensors").write_bytes(b"garbage")
    repo2 = new_repo()
    hub.clear()
    assert main(["push", str(bad), repo2]) == 2
    assert not any(m == "POST" for m, _ in hub.requests())
