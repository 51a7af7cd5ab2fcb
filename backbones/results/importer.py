"""Records from elsewhere (a published number, another lab's evaluation): the one way in.

``tools/import_run.py`` is the command line. A hand-written ``metrics.json`` would fail the
schema (:mod:`.schema`) anyway; this writes a complete record instead, and only after it
passed the same validation the leaderboard applies: the numbers in the suite's units
(converted from the paper's with ``units='paper'``, never guessed), the config that places
the row (its resolved copy and digest), the sha256 of the checkpoint the numbers belong to,
and where they come from (``origin``). The run folder appears whole or not at all.
"""
import os
import os.path as osp
import shutil
import tempfile

from .runs import RunError, result_flags, write_run_record
from .schema import DET_METRICS, check_metrics, validate_run

__all__ = ['import_run', 'to_suite_units']


def to_suite_units(task, metrics, units):
    """``metrics`` in mmdet's / mmseg's own units. ``units='paper'``: AP in percent as the
    paper prints it (mmdet writes fractions); mIoU is percent in both."""
    if units == 'suite':
        return dict(metrics)
    if units != 'paper':
        raise ValueError(f"units must be 'suite' or 'paper', got {units!r}")
    if task != 'mmdet':
        return dict(metrics)
    return {k: (v / 100 if k in DET_METRICS.values() and isinstance(v, (int, float))
                and not isinstance(v, bool) else v) for k, v in metrics.items()}


def import_run(cfg, config, metrics, out, origin, checkpoint=None, checkpoint_sha256=None,
               tta=False, world_size=1, units='suite', date=None, force=False):
    """Write the run folder ``out`` for ``metrics`` measured elsewhere with ``config``
    (``cfg``: it loaded, TTA applied when ``tta``). Raises RunError naming every problem;
    nothing is written then."""
    task = cfg.default_scope
    metrics = to_suite_units(task, metrics, units)
    problems = check_metrics(task, metrics) + [f'metrics: {f}' for f in result_flags(
        task, metrics)]
    if not (origin or '').strip():
        problems.append('--origin is empty: say where the numbers come from (URL, paper, log)')
    if checkpoint is None and not checkpoint_sha256:
        problems.append('give --checkpoint (hashed here) or --checkpoint-sha256: the numbers '
                        'belong to one set of weights')
    if checkpoint is not None and not osp.isfile(checkpoint):
        problems.append(f'--checkpoint {checkpoint} does not exist')
    if osp.exists(out) and not force:
        problems.append(f'{out} exists (a run folder): choose another --out, or --force')
    if problems:
        raise RunError('; '.join(problems))
    parent = osp.dirname(osp.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(out)}.', suffix='.part', dir=parent)
    try:
        write_run_record(tmp, cfg, metrics, config=config,
                         checkpoint=checkpoint or f'sha256:{checkpoint_sha256}', tta=tta,
                         world_size=world_size, env={'imported': True}, source='imported',
                         origin=origin.strip(), checkpoint_sha256=checkpoint_sha256)
        if date:
            from .runs import stamp_record
            stamp_record(tmp, date=date)
        import json
        with open(osp.join(tmp, 'metrics.json')) as f:
            found = validate_run(tmp, json.load(f))
        if found:
            raise RunError('; '.join(found))
        if osp.exists(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            shutil.rmtree(tmp)
    return out
