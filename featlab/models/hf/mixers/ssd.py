"""Hooks inside the SSD mixers of HF's Mamba2, Bamba and Falcon-H1 (`Mamba2Mixer`,
`BambaMixer`, `FalconH1Mixer`), with the names and meaning of featlab's own SSD mixer.

The adapter recomputes HF's forward from the HF module's own submodules and parameters
(``in_proj``, ``conv1d``, ``A_log``, ``dt_bias``, ``D``, ``norm``, ``out_proj``) and runs the
recurrence with featlab's ``ssd`` op:

    z, xBC, dt_raw = in_proj(u)                 (Falcon-H1: in_proj(u * ssm_in) * mup_vector)
    x, B, C = split(silu(conv1d(xBC)))          x [b, t, H, P], B, C [b, t, G, N]
    dt = clamp(softplus(dt_raw + dt_bias), time_step_limit),  A = -exp(A_log)
    hook_q = C,  hook_k = B                     expanded from G groups to H heads
    hook_v = dt * x,  hook_log_decay = dt * A   [b, t, H, P], [b, t, H]
    S_t = exp(dt_t A) S_{t-1} + B_t (dt_t x_t)^T,  y_t = S_t^T C_t + D x_t
    hook_out_gate = silu(z)                     [b, t, H, P]
    out = out_proj(gated_norm(y, gate))         per group of heads, as HF does it

Groups: head ``h`` reads group ``h // (H / G)`` (HF's ``repeat_interleave``); the hooks show
the per-head copies, so patching one head's ``hook_k`` leaves the other heads of its group
alone. There is no ``hook_beta``: SSD has no write strength. The D skip reads ``x`` before
``dt`` (``hook_v / dt``), outside the recurrence, as in featlab's SSD mixer; a patch of
``hook_v`` does not reach it. States are featlab's ``[b, H, N, P]``, the transpose of HF's
cache ``[b, H, P, N]``. Everything from the conv output to the norm runs in fp32, as HF's
torch path does.

Where the HF module's own forward runs instead, unchanged and firing no mixer hook: with a
cache (``use_cache=True`` prefill, decoding, ``generate``: featlab's op keeps no conv / SSM
cache), for packed sequences (``seq_idx`` / ``cu_seq_lens_q``, which only HF's kernels honour),
and when none of the adapter's hooks has a hook attached and ``use_state_hook`` is off. The
last keeps `HookedHFModel`'s promise that without hooks the logits are HF's, bit for bit (and
matches the Gated DeltaNet adapters); once any mixer hook is attached (``run_with_cache``
too) featlab's path runs, equal to HF's to fp32 rounding. With ``use_state_hook`` it always
runs, so a clean and a patched run are computed alike and positions before a patch match
exactly. HF's fused ``mamba_ssm`` training kernel is never used by featlab's path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from featlab.models.hf.mixers import MixerAdapter
from featlab.models.mixers.recurrent import recur_with_state_hook
from featlab.models.ops import OPS


def _mask_padding(x: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """HF's ``apply_mask_to_padding_states``: zero the padded positions of ``[b, t, d]``."""
    if attention_mask is None:
        return x
    return (x * attention_mask[:, :, None]).to(x.dtype)


class SSDAdapter(MixerAdapter):
    """`Mamba2Mixer` and `BambaMixer` (the same code in transformers 5.24): HF's forward
    through featlab's ``ssd`` op, firing the mixer hooks. Falcon-H1 overrides the input
    scaling and the norm (`FalconH1SSDAdapter`)."""

    op = OPS["ssd"]
    packed_keys = ("seq_idx", "cu_seq_lens_q")

    hooks = ("hook_q", "hook_k", "hook_v", "hook_log_decay", "hook_out_gate",
             "hook_state_final", "hook_state")

    # -- what differs between the architectures --------------------------------------------
    def project(self, u: torch.Tensor) -> torch.Tensor:
        return self.hf.in_proj(u)

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """``silu(z)`` as HF's norm computes it (in fp32)."""
        return F.silu(z.float())

    def gated_norm(self, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Mamba2 / Bamba ``MambaRMSNormGated``: RMS-normalise ``y * gate`` over each group of
        ``intermediate / n_groups`` channels (``H / G`` heads), then scale; ``[b, t, I]``."""
        norm = self.hf.norm
        h = y.float() * gate
        grouped = h.unflatten(-1, (-1, norm.group_size))
        variance = grouped.pow(2).mean(-1, keepdim=True)
        h = (grouped * torch.rsqrt(variance + norm.variance_epsilon)).flatten(-2)
        return norm.weight * h.to(y.dtype)

    # -- the forward (`MixerAdapter.forward` decides which runs) -----------------------------
    def featlab_forward(self, hidden_states: torch.Tensor,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """HF's torch forward without a cache, through featlab's op, firing the hooks."""
        hf = self.hf
        b, t, _ = hidden_states.shape
        dtype = hidden_states.dtype
        heads, groups, n = hf.num_heads, hf.n_groups, hf.ssm_state_size
        projected = self.project(_mask_padding(hidden_states, attention_mask))
        z, xbc, dt = projected.split([hf.intermediate_size, hf.conv_dim, heads], dim=-1)
        # the module itself, not its weight: accelerate's offloading hooks fire on it
        xbc = hf.act(hf.conv1d(xbc.transpose(1, 2))[..., :t]).transpose(1, 2)
        xbc = _mask_padding(xbc, attention_mask)
        x, bmat, cmat = xbc.split([hf.intermediate_size, groups * n, groups * n], dim=-1)

        dt = F.softplus(dt + hf.dt_bias.to(dt.dtype))
        dt = torch.clamp(dt, min=hf.time_step_limit[0], max=hf.time_step_limit[1]).float()
        x = x.unflatten(-1, (heads, hf.head_dim)).float()  # [b, t, H, P]
        per_group = heads // groups
        k = bmat.unflatten(-1, (groups, n)).float().repeat_interleave(per_group, dim=2)
        q = cmat.unflatten(-1, (groups, n)).float().repeat_interleave(per_group, dim=2)
        log_decay = -torch.exp(hf.A_log.float()) * dt  # [b, t, H]

        q, k = self.hook_q(q), self.hook_k(k)
        v, log_decay = self.hook_v(x * dt[..., None]), self.hook_log_decay(log_decay)
        if self.use_state_hook:
            ones = log_decay.new_ones(log_decay.shape)  # SSD has no beta: write strength 1
            y, final = recur_with_state_hook(self.hook_state, self.op, q, k, v, log_decay, ones)
        else:
            y, final = self.op.chunk(q, k, v, log_decay, chunk_size=hf.chunk_size)
        self.hook_state_final(final)
        y = y + hf.D[:, None] * x

        gate = self.hook_out_gate(self.gate(z).unflatten(-1, (heads, hf.head_dim)))
        out = self.gated_norm(y.flatten(-2), gate.flatten(-2))
        return hf.out_proj(out.to(dtype))



class FalconH1SSDAdapter(SSDAdapter):
    """`FalconH1Mixer`: the input scaled by ``ssm_in_multiplier`` and ``in_proj``'s output by
    ``mup_vector`` (so the hooks see the scaled z, x, B, C, dt HF uses), and the gated norm
    optional (``mamba_rms_norm``, default False: the output is ``y * silu(z)``), with
    ``mamba_norm_before_gate`` choosing where the gate goes."""

    def project(self, u: torch.Tensor) -> torch.Tensor:
        return self.hf.in_proj(u * self.hf.ssm_in_multiplier) * self.hf.mup_vector

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        # without the norm HF multiplies by silu(gate) in the gate's own dtype
        return F.silu(z.float()) if self.hf.mamba_rms_norm else F.silu(z)

    def gated_norm(self, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        if not self.hf.mamba_rms_norm:
            return y * gate
        norm = self.hf.norm  # FalconH1RMSNormGated
        h = y if norm.norm_before_gate else y * gate
        grouped = h.float().unflatten(-1, (norm.n_groups, -1))
        variance = grouped.pow(2).mean(-1, keepdim=True)
        grouped = grouped * torch.rsqrt(variance + norm.variance_epsilon)
        h = (norm.weight.view(norm.n_groups, -1) * grouped).flatten(-2)
        if norm.norm_before_gate:
            h = h * gate
        return h.to(y.dtype)
