"""The shared layers: the embedding's gradient does not depend on CPU thread scheduling."""

from __future__ import annotations

import torch

from featlab.models.layers import Embed


def test_embedding_gradient_is_the_same_every_time_on_several_threads() -> None:
    # Indexing (W_E[tokens]) accumulated its backward with atomic adds across threads, so
    # two runs of the same seed trained models apart by 1e-6 after 30 steps and 6e-3 after
    # 240; the demo's circuit then kept 320 nodes in one run and 384 in the next.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        embed = Embed(4096, 128, init_std=0.02)
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, 4096, (32, 128), generator=g)
        upstream = torch.randn(32, 128, 128, generator=g)
        grads = []
        for _ in range(6):
            embed.zero_grad()
            (embed(tokens) * upstream).sum().backward()
            grads.append(embed.W_E.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grad, grads[0]) for grad in grads)
    assert torch.equal(embed(tokens), embed.W_E.detach()[tokens])
