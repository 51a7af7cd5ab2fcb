"""Normalisation layers shared by the backbones."""
import torch
import torch.nn.functional as F
from torch import nn


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
