"""The Hub path end to end: the real huggingface_hub client against tests/hub_server.py."""
from __future__ import annotations

import itertools
import shutil

import huggingface_hub.constants as hf_constants
import pytest
import torch
from huggingface_hub import HfApi
from tiny_models import TinyModel, tiny

import genzoo
from genzoo.hub import build_model_card
from genzoo.registry import _REGISTRY, register

_ids = itertools.count()


def new_repo() -> str:
    return f"tester/tiny-{next(_ids)}"


def outputs(model) -> torch.Tensor:
    return model.sample(3, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def temp_entry():
    names = []

    def make(name, hub_id, **kw):
        names.append(name)
        return register(name, TinyModel, tiny().config, hub_id=hub_id, dataset="fashion-mnist", **kw)

    yield make
    for n in names:
        _REGISTRY.pop(n, None)


def test_push_and_load(hub):
    repo = new_repo()
    m = tiny(1)
    sha = m.push_to_hub(repo)
    assert len(sha) == 40
    files = set(HfApi().list_repo_files(repo))
    assert files == {".gitattributes", "config.json", "model.safetensors", "README.md"}
    assert ("POST", f"/api/models/{repo}/commit/main") in hub.log
    loaded = TinyModel.from_pretrained(repo)
    assert not loaded.training
    assert torch.equal(outputs(loaded), outputs(m))
    assert loaded.config == m.config and isinstance(loaded.config.hidden, tuple)


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
    assert torch.equal(outputs(genzoo.load(repo, revision="v1")), outputs(v1))
    assert torch.equal(outputs(genzoo.load(repo, revision=sha1)), outputs(v1))
    assert torch.equal(outputs(genzoo.load(repo)), outputs(v2))
    assert torch.equal(outputs(genzoo.load(repo, revision="dev")), outputs(v3))
    assert torch.equal(outputs(genzoo.load(repo, revision=sha3)), outputs(v3))


def test_cache_hits_make_zero_requests(hub, offline, monkeypatch):
    repo = new_repo()
    m = tiny(4)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    sha = m.push_to_hub(repo)
    genzoo.load(repo, revision=sha)
    genzoo.load(repo)
    assert hub.downloads(), "the first loads must download"
    hub.clear()
    # a pinned sha and the cached main resolve from the cache with no request at all
    assert torch.equal(outputs(genzoo.load(repo, revision=sha)), outputs(m))
    assert torch.equal(outputs(genzoo.load(repo)), outputs(m))
    assert hub.log == []
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert torch.equal(outputs(genzoo.load(repo)), outputs(m))
    assert hub.log == []


def test_offline_without_cache_fails_clearly(hub, offline):
    with pytest.raises(genzoo.CheckpointNotFoundError, match="offline") as e:
        genzoo.load("tester/never-downloaded")
    assert "Hub cache" in str(e.value)
    assert hub.log == []


def test_not_found_errors(hub):
    with pytest.raises(genzoo.CheckpointNotFoundError, match="not found") as e:
        genzoo.load("tester/does-not-exist")
    assert "Looked in" in str(e.value) and "Hub cache" in str(e.value)
    repo = new_repo()
    tiny().push_to_hub(repo)
    with pytest.raises(genzoo.CheckpointNotFoundError, match="revision 'nope' does not exist"):
        genzoo.load(repo, revision="nope")


def test_registry_name_resolves_cache_then_hub_then_bundled(hub, temp_entry, tmp_path, monkeypatch):
    # 1. the Hub has it: downloaded, then served from the cache with zero requests
    repo = new_repo()
    m = tiny(5)
    m.push_to_hub(repo)
    temp_entry("tiny-hubbed", repo)
    assert torch.equal(outputs(genzoo.load("tiny-hubbed")), outputs(m))
    hub.clear()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert torch.equal(outputs(genzoo.load("tiny-hubbed")), outputs(m))
    assert hub.log == []
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    # 2. not on the Hub: the bundled copy in model_cards/<name>/ is used
    bundled = tiny(6)
    monkeypatch.setenv("GENZOO_MODEL_CARDS", str(tmp_path))
    bundled.save_pretrained(tmp_path / "tiny-bundled")
    temp_entry("tiny-bundled", "tester/not-pushed")
    assert torch.equal(outputs(genzoo.load("tiny-bundled")), outputs(bundled))
    # a pinned revision never silently falls back to the bundled copy
    with pytest.raises(genzoo.CheckpointNotFoundError, match="revision was pinned"):
        genzoo.load("tiny-bundled", revision="v9")
    # 3. nowhere: the error says where it looked and how to train it
    temp_entry("tiny-nowhere", "tester/not-pushed-either")
    with pytest.raises(genzoo.CheckpointNotFoundError) as e:
        genzoo.load("tiny-nowhere")
    msg = str(e.value)
    assert "Hub cache" in msg and "bundled copy" in msg and "genzoo train tiny-nowhere" in msg


def test_architecture_and_unpublished_errors(temp_entry):
    with pytest.raises(genzoo.CheckpointNotFoundError, match="architecture without weights"):
        genzoo.load("vae")
    temp_entry("tiny-paper-preset", "genzoo/tiny-paper-preset", published=False)
    with pytest.raises(genzoo.CheckpointNotFoundError, match="not published yet.*genzoo train tiny-paper-preset"):
        genzoo.load("tiny-paper-preset")


def test_card_metadata_through_the_hub(hub, tmp_path):
    repo = new_repo()
    m = tiny(7)
    card = build_model_card(
        "tiny", m, description="A tiny test model.", dataset="fashion-mnist",
        metrics=[{"key": "bpd", "type": "bits_per_dim", "name": "bits/dim", "value": 3.25, "protocol": "test"}],
        training={"command": "genzoo train tiny --out x", "seed": 0, "hardware": "CPU", "wall_time_s": 1.0})
    m.push_to_hub(repo, model_card=card)
    data = HfApi().model_info(repo).card_data.to_dict()
    assert data["library_name"] == "genzoo" and data["license"] == "mit"
    assert data["datasets"] == ["fashion-mnist"] and "genzoo" in data["tags"]
    result = data["model-index"][0]["results"][0]
    assert result["metrics"][0]["type"] == "bits_per_dim" and result["metrics"][0]["value"] == 3.25
    assert result["dataset"]["name"] == "fashion-mnist"
    assert data["genzoo"]["training"]["command"] == "genzoo train tiny --out x"


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
    assert main(["push", str(bad), new_repo()]) == 2
