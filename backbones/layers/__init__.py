"""Layers shared by the suite's backbones (timm's where timm has them: DropPath, Mlp).

A layer used by one architecture lives in that architecture's file under ``models/``; a
layer two or more families share lives here.
"""
from .blocks import run_blocks, stage_drop_path_rates
from .conv import ConvDownsample, ConvStem
from .norm import LayerNorm

__all__ = ['LayerNorm', 'ConvStem', 'ConvDownsample', 'run_blocks', 'stage_drop_path_rates']
