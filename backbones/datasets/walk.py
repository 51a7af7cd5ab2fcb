"""The innermost dataset configs of a loader (through RepeatDataset, ConcatDataset & co.)."""

__all__ = ['iter_datasets', 'innermost_dataset']


def iter_datasets(node, path='dataset'):
    """Yield ``(dotted path, config)`` of every leaf dataset below ``node`` (a dataset
    config); the path is relative to the node's parent, e.g. ``dataset.dataset``."""
    if 'dataset' in node:
        yield from iter_datasets(node['dataset'], f'{path}.dataset')
    elif 'datasets' in node:
        for i, sub in enumerate(node['datasets']):
            yield from iter_datasets(sub, f'{path}.datasets.{i}')
    else:
        yield path, node


def innermost_dataset(loader_cfg, prefix=None):
    """``(dotted path, config)`` of the first leaf dataset of a dataloader config; the path
    starts with ``prefix`` (e.g. ``'train_dataloader'``) when given."""
    path, dataset = next(iter_datasets(loader_cfg['dataset']))
    return (f'{prefix}.{path}' if prefix else path), dataset
