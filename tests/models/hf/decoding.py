"""HF's own step-by-step decoding with its cache, the reference the mixer tests compare the
hooked parallel forward against (Gated DeltaNet and KDA: the state lives in the cache)."""

from __future__ import annotations

import torch


def decode_with_cache(hf, mixer, tokens: torch.Tensor, patch_at: int | None = None,
                      patch=None):
    """Decode `tokens` one at a time: logits [b, t, vocab], the output of `mixer` (layer 0's
    HF mixer module) [b, t, d_model] and layer 0's recurrent state after every token
    [b, t, H, d_k, d_v]; `patch(state)` replaces the cached state after token `patch_at`."""
    outputs: list[torch.Tensor] = []
    handle = mixer.register_forward_hook(lambda m, i, out: outputs.append(out))
    try:
        out = hf(input_ids=tokens[:, :1], use_cache=True)
        cache, logits, states = out.cache, [out.logits], []
        for i in range(tokens.shape[1]):
            if i:
                step = hf(input_ids=tokens[:, i:i + 1], cache=cache, use_cache=True)
                logits.append(step.logits)
            state = cache.get_recurrent_state(0)  # updated in place: copy it
            if i == patch_at:
                state.copy_(patch(state))
            states.append(state.clone())
    finally:
        handle.remove()
    return torch.cat(logits, dim=1), torch.cat(outputs, dim=1), torch.stack(states, dim=1)
