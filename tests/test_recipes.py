"""Recipes: `genzoo train` writes a complete Hub repo folder; a short real run learns."""
from __future__ import annotations

import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.hub import read_card_metadata
from genzoo.metrics import elbo_bpd
from genzoo.recipes import load_split, train_recipe
from genzoo.registry import get_entry


def test_train_cli_writes_complete_repo(tmp_path):
    out, run = tmp_path / "card", tmp_path / "run"
    assert main(["train", "vae-fashion-mnist", "--out", str(out), "--run-dir", str(run), "--steps", "3",
                 "--no-eval", "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    assert (run / "trainer_checkpoint" / "state.safetensors").is_file()
    meta = read_card_metadata(out)
    assert meta["genzoo"]["training"]["steps"] == 3 and "--steps 3" in meta["genzoo"]["training"]["command"]
    m = genzoo.load(str(out))
    assert m.config == get_entry("vae-fashion-mnist").config and not m.training


def test_train_unknown_or_recipe_less_name(capsys):
    assert main(["train", "vae", "--out", "x", "--steps", "1"]) == 2
    assert "has no recipe" in capsys.readouterr().err


@pytest.mark.slow
def test_short_recipe_learns(tmp_path):
    """400 steps of the vae-fashion-mnist recipe bring test -ELBO well below an untrained model's."""
    entry = get_entry("vae-fashion-mnist")
    test = load_split(entry, "test").images[:2000]
    untrained = elbo_bpd(genzoo.create("vae-fashion-mnist"), test)
    out = train_recipe("vae-fashion-mnist", tmp_path / "card", steps=400, progress=False,
                       evaluate_after=False, run_dir=tmp_path / "run")
    trained = elbo_bpd(genzoo.load(str(out)), test)
    assert trained < 4.2 < untrained, (trained, untrained)
    assert torch.isfinite(torch.tensor(trained))
