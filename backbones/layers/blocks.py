"""Running a stage's blocks (per-block activation checkpointing) and its drop-path schedule."""
import torch
import torch.utils.checkpoint as cp


def run_blocks(blocks, x, with_cp=False):
    """Apply ``blocks`` in turn; with ``with_cp`` (and grad enabled) checkpoint each block on
    its own: only block inputs are kept, where checkpointing the whole stage would rebuild
    all of its activations at once in backward."""
    for block in blocks:
        if with_cp and torch.is_grad_enabled():
            x = cp.checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x


def stage_drop_path_rates(drop_path_rate, depths):
    """Stochastic depth rising linearly from 0 to ``drop_path_rate`` over all blocks, split
    per stage (plain floats: no tensor is made, so meta-device construction works)."""
    total = sum(depths)
    rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    return [rates[sum(depths[:i]):sum(depths[:i + 1])] for i in range(len(depths))]
