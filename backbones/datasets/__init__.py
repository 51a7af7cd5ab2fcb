"""Datasets: the toy COCO / ADE20K generator, the toy overrides of any config, and the walk
to the innermost dataset configs."""
from .walk import innermost_dataset, iter_datasets

__all__ = ['iter_datasets', 'innermost_dataset']
