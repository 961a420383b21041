"""save_model / load_model: identical logits after a round trip, clear errors, atomic files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from featlab.models import HookedHybrid, HybridConfig, load_model, save_model
from featlab.models.io import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME


def model() -> HookedHybrid:
    cfg = HybridConfig(layers=("conv", "swa"), d_model=16, n_heads=2, d_vocab=32, n_ctx=16)
    m = HookedHybrid(cfg)
    with torch.no_grad():  # move away from the seeded init so loading must really load
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return m.eval()


def test_round_trip_identical_logits(tmp_path: Path) -> None:
    m = model()
    save_model(m, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, HookedHybrid)
    assert loaded.cfg == m.cfg
    toks = torch.randint(0, 32, (3, 16))
    assert torch.equal(loaded(toks), m(toks))
    meta = json.loads((tmp_path / "m" / CONFIG_NAME).read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["model_class"] == "HookedHybrid"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no model folder"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        load_model(tmp_path / "empty")


def test_corrupt_files(tmp_path: Path) -> None:
    save_model(model(), tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt"):
        load_model(tmp_path)
    (tmp_path / CONFIG_NAME).write_text("{ truncated")
    with pytest.raises(ValueError, match="corrupt"):
        load_model(tmp_path)


def test_newer_format_rejected(tmp_path: Path) -> None:
    save_model(model(), tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="upgrade featlab"):
        load_model(tmp_path)


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import featlab._atomic as atomic

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(model(), tmp_path / "m")
    assert list((tmp_path / "m").iterdir()) == []


def test_hooked_transformer_round_trip(tmp_path: Path) -> None:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=16, d_head=8, n_heads=2,
                                  d_vocab=20, act_fn="relu", d_mlp=32, seed=0, device="cpu")
    ht = HookedTransformer(cfg).eval()
    save_model(ht, tmp_path / "ht")
    loaded = load_model(tmp_path / "ht")
    assert isinstance(loaded, HookedTransformer) and loaded.cfg.dtype == torch.float32
    toks = torch.randint(0, 20, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(toks), ht(toks))
    assert load_model(ht) is ht  # an in-memory hooked model is used as it is


def test_names_need_a_prefix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="hf:<id>"):
        load_model(str(tmp_path / "runs" / "modle"))  # a typo is not sent to the hub
    with pytest.raises(ValueError, match="did you mean"):
        load_model("tl:gpt2-smal")
    with pytest.raises(TypeError, match="neither a hooked model"):
        load_model(torch.nn.Linear(2, 2))
