"""Convolutional stem and downsampling shared by MambaOut and VMamba V2 (NHWC out)."""
from torch import nn

from .norm import LayerNorm


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
