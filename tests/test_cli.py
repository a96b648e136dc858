"""The genzoo command line, run in-process through cli.main."""
from __future__ import annotations

import pytest
from PIL import Image

from genzoo.cli import main
from genzoo.registry import get_entry, list_models

BUNDLED = [n for n in list_models("pretrained") if get_entry(n).published]
SAMPLERS = [n for n in BUNDLED if not n.startswith("classifier-")]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out


@pytest.mark.parametrize("name", SAMPLERS)
def test_sample_writes_grid(tmp_path, name):
    out = tmp_path / "grid.png"
    assert main(["sample", name, "-n", "16", "-o", str(out), "--scale", "1"]) == 0
    img = Image.open(out)
    c, h = get_entry(name).config.in_channels, get_entry(name).config.image_size
    assert img.size == (4 * (h + 2) + 2, 4 * (h + 2) + 2)
    assert img.mode == ("L" if c == 1 else "RGB")


def test_unknown_name_suggests(capsys):
    assert main(["sample", "vae-fashion-mnst", "-o", "x.png"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'vae-fashion-mnst'" in err and "vae-fashion-mnist" in err


def test_architecture_without_weights(capsys):
    assert main(["sample", "vae", "-o", "x.png"]) == 2
    assert "architecture without weights" in capsys.readouterr().err


def test_card_regenerates(tmp_path, capsys):
    import shutil

    from genzoo.hub import bundled_dir, read_card_metadata

    name = SAMPLERS[0]
    folder = tmp_path / name
    shutil.copytree(bundled_dir() / name, folder)
    before = read_card_metadata(folder)
    text = (folder / "README.md").read_text()
    front = text[: text.index("\n---", 4) + 4]
    (folder / "README.md").write_text(front + "\nstale body\n")
    assert main(["card", str(folder), "--name", name]) == 0
    text = (folder / "README.md").read_text()
    assert "stale body" not in text and "## Metrics" in text and "genzoo eval" in text
    after = read_card_metadata(folder)
    assert after["genzoo"]["metrics"] == before["genzoo"]["metrics"]
    assert after["genzoo"]["training"] == before["genzoo"]["training"]


def test_sampling_a_classifier_is_a_clear_error(capsys):
    assert main(["sample", "classifier-fashion-mnist", "-o", "x.png"]) == 2
    assert "does not sample" in capsys.readouterr().err


def test_eval_only_sample_quality_merges_into_the_card(tmp_path, capsys):
    """`genzoo eval NAME --only sample-quality --write-card` recomputes those four numbers, keeps the rest."""
    import shutil

    from genzoo.hub import bundled_dir, read_card_metadata

    name = "nice-mnist"
    folder = tmp_path / name
    shutil.copytree(bundled_dir() / name, folder)
    before = {m["key"]: m for m in read_card_metadata(folder)["genzoo"]["metrics"]}
    stale = dict(before)
    text = (folder / "README.md").read_text().replace(f"value: {before['recall']['value']}", "value: 0.123456")
    (folder / "README.md").write_text(text)
    assert main(["eval", name, "--path", str(folder), "--only", "sample-quality", "--write-card"]) == 0
    out = capsys.readouterr().out
    assert "recall (k=3)" in out and "MISMATCH" in out  # the edited value is flagged before the rewrite
    after = {m["key"]: m for m in read_card_metadata(folder)["genzoo"]["metrics"]}
    assert list(after) == list(stale)
    assert after["test_bpd"] == before["test_bpd"]  # the family metric is kept, not recomputed
    for key in ("fd_fmnist", "kid", "precision", "recall"):
        assert after[key]["value"] == pytest.approx(before[key]["value"], rel=1e-6)
