"""The one reference selective scan: the recurrence written out token by token.

Every backend is checked against it (tests/, ``tools/benchmark.py scan``). It follows the
form of mamba-ssm's ``selective_scan_ref``: the discretisation vectorised over the sequence,
then one step per token. ``dtype`` is the precision it computes in (float64 is the ground
truth of the tests; the benchmark times it in float32 as the naive baseline).
"""
import torch
import torch.nn.functional as F

__all__ = ['reference_scan']


def reference_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                   dtype=torch.float64):
    """Shapes as :func:`backbones.ops.selective_scan`; returns ``dtype`` (batch, dim, L)."""
    u, delta, A = u.to(dtype), delta.to(dtype), A.to(dtype)
    d = u.shape[1]
    B = (B if B.dim() == 4 else B.unsqueeze(1)).to(dtype)
    C = (C if C.dim() == 4 else C.unsqueeze(1)).to(dtype)
    B = B.repeat_interleave(d // B.shape[1], dim=1)  # (b, d, N, L)
    C = C.repeat_interleave(d // C.shape[1], dim=1)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    decay = torch.exp(torch.einsum('bdl,dn->bdln', delta, A))
    inputs = torch.einsum('bdl,bdnl->bdln', delta * u, B)
    h = u.new_zeros(u.shape[0], d, A.shape[1])
    ys = []
    # unbind, not decay[:, :, t]: the backward of indexing would build a full-size gradient
    # per token (quadratic in L); unbind's backward stacks them once
    for a_t, x_t, c_t in zip(decay.unbind(2), inputs.unbind(2), C.unbind(-1)):
        h = a_t * h + x_t
        ys.append(torch.einsum('bdn,bdn->bd', h, c_t))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u
    return y
