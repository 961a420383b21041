"""Token-id files: every supported format reads the same ids; bad files say what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featlab.datasets.tokens import load_tokens


def test_formats_agree(tmp_path) -> None:
    from safetensors.torch import save_file

    toks = torch.randint(0, 20, (10, 12), generator=torch.Generator().manual_seed(0))
    torch.save({"tokens": toks}, tmp_path / "a.pt")
    torch.save({"input_ids": toks}, tmp_path / "b.pt")
    torch.save(toks.int(), tmp_path / "c.pt")
    np.save(tmp_path / "d.npy", toks.numpy())
    save_file({"tokens": toks}, str(tmp_path / "e.safetensors"))
    for name in ("a.pt", "b.pt", "c.pt", "d.npy", "e.safetensors"):
        got = load_tokens(tmp_path / name)
        assert got.dtype == torch.long and torch.equal(got, toks), name
    assert torch.equal(load_tokens(tmp_path / "d.npy", n_seq=4), toks[:4])


def test_bad_files_name_the_problem(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no token file"):
        load_tokens(tmp_path / "missing.pt")
    (tmp_path / "t.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="unknown suffix"):
        load_tokens(tmp_path / "t.txt")
    torch.save(torch.rand(3, 4), tmp_path / "f.pt")
    with pytest.raises(ValueError, match="integer token ids"):
        load_tokens(tmp_path / "f.pt")
    torch.save({"x": torch.zeros(2, 2)}, tmp_path / "k.pt")
    with pytest.raises(ValueError, match="expected one of"):
        load_tokens(tmp_path / "k.pt")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="cannot read"):
        load_tokens(tmp_path / "junk.npy")
