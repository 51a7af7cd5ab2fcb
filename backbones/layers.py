"""Layers shared by the suite's backbones (timm's where timm has them: DropPath, Mlp)."""
import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

__all__ = ['LayerNorm', 'ConvStem', 'ConvDownsample', 'run_blocks', 'stage_drop_path_rates']


class LayerNorm(nn.LayerNorm):
    """LayerNorm over the last (channel) dim, always computed in float32.

    Under autocast the result stays float32 (autocast's own policy for ``layer_norm`` on
    CPU and CUDA), so the residual stream is never rounded to fp16/bf16 (an fp16 LN of SSM
    outputs overflows); outside autocast it is returned in the input dtype (a model cast to
    bf16 stays bf16).
    """

    def forward(self, x):
        y = F.layer_norm(x.float(), self.normalized_shape, self.weight.float(),
                         self.bias.float(), self.eps)
        return y if torch.is_autocast_enabled(x.device.type) else y.to(x.dtype)


class ConvStem(nn.Module):
    """conv3x3/s2 -> LN -> GELU -> conv3x3/s2 -> LN, half the width in between (MambaOut's
    stem, VMamba V2's ``PATCHEMBED: v2``). NCHW image in, NHWC features out."""

    def __init__(self, in_chs, out_chs, norm_layer=LayerNorm):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs // 2, 3, stride=2, padding=1)
        self.norm1 = norm_layer(out_chs // 2)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(out_chs // 2, out_chs, 3, stride=2, padding=1)
        self.norm2 = norm_layer(out_chs)

    def forward(self, x):
        x = self.norm1(self.conv1(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.conv2(self.act(x))
        return self.norm2(x.permute(0, 2, 3, 1))


class ConvDownsample(nn.Module):
    """conv3x3/s2 then LN between stages (MambaOut, VMamba V2's ``DOWNSAMPLE: v3``), NHWC."""

    def __init__(self, in_chs, out_chs, norm_layer=LayerNorm):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1)
        self.norm = norm_layer(out_chs)

    def forward(self, x):
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


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
