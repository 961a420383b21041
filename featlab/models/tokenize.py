"""Text to token ids with a model's tokenizer: the one `to_tokens` behind featlab's models."""

from __future__ import annotations

from typing import Any


def to_tokens(tokenizer: Any, text: str | list[str], prepend_bos: bool | None,
              device: Any, owner: str) -> Any:
    """Token ids ``[batch, pos]`` of `text` (several texts are right-padded with the
    tokenizer's pad token). With `prepend_bos`, every row opens with BOS unless the tokenizer
    already put one there. `owner` names the model in the error when there is no tokenizer."""
    import torch

    if tokenizer is None:
        raise ValueError(f"this {owner} model has no tokenizer; pass token ids, or load it "
                         "from a folder that holds one")
    texts = [text] if isinstance(text, str) else list(text)
    ids = tokenizer(texts, return_tensors="pt", padding=len(texts) > 1)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    if prepend_bos and bos is not None and not bool((ids[:, 0] == bos).all()):
        ids = torch.cat([torch.full((len(ids), 1), bos), ids], dim=1)
    return ids.to(device)
