"""Run records: ``metrics.json`` as tools/test.py writes it and the leaderboard reads it.

:func:`write_run_record` writes it (atomically), :func:`load_run` parses it and validates
it against the one schema (:mod:`.schema`: fields, types, units, provenance, the run's
config). A record that cannot be used raises :class:`RunError` with every reason; it is
reported and skipped, never filled in. That includes a result :func:`result_flags` flags
(NaN, all zero) and a run evaluated with ``--allow-partial``, whose record is written to
:data:`PARTIAL_RECORD` instead. :func:`stamp_record` lets another writer (``reproduce.py
release``) change the ``source`` of a record tools/test.py wrote, validated again.
"""
import datetime
import json
import math
import os
import os.path as osp

from ..datasets.toy_data import TOY_MARKER
from ..datasets.walk import innermost_dataset
from ..engine.fileio import write_file_atomic
from ..metadata import load_rows, row_for_backbone, row_for_config
from .schema import (
    DET_METRICS,
    RECORD_VERSION,
    SEG_METRICS,
    config_ref,
    file_sha256,
    validate_run,
)

__all__ = ['RunError', 'load_run', 'collect_runs', 'write_run_record', 'run_description',
           'result_flags', 'stamp_record', 'DET_METRICS', 'SEG_METRICS', 'PARTIAL_RECORD']
#: Where tools/test.py --allow-partial puts its record: never collected.
PARTIAL_RECORD = 'metrics.partial.json'


def write_json_atomic(path, obj):
    write_file_atomic(json.dumps(obj, indent=2, sort_keys=True, default=str), path)


def _plain(value):
    """numpy / torch scalars to float so the JSON is plain."""
    return float(value) if hasattr(value, '__float__') and not isinstance(value, str) else value


def run_description(cfg):
    """What the leaderboard needs to place a run: backbone, data, schedule."""
    backbone = cfg.model.get('module', cfg.model).get('backbone', {})
    _, dataset = innermost_dataset(cfg.test_dataloader)
    data_root = dataset.get('data_root', '')
    train_cfg = cfg.get('train_cfg') or {}
    schedule = (f"{train_cfg['max_epochs']}e" if 'max_epochs' in train_cfg else
                f"{train_cfg['max_iters']}i" if 'max_iters' in train_cfg else '')
    return dict(backbone=dict(type=backbone.get('type'), arch=backbone.get('arch'),
                              model_name=backbone.get('model_name')),
                dataset=dataset.get('type'), data_root=data_root, schedule=schedule,
                toy=osp.isfile(osp.join(data_root, TOY_MARKER)))


def result_flags(task, metrics):
    """Why a result must not become a table row although the evaluation ran: a NaN/inf or
    missing headline metric, a negative one, or all of them 0 (what NaN weights, a
    checkpoint of another model, or labels that match no class give). Empty list for a
    usable result."""
    names = list((DET_METRICS if task in ('mmdet', 'det') else SEG_METRICS).values())
    values = {k: metrics.get(k) for k in names}
    flags = []
    bad = [k for k, v in values.items() if not _is_finite_number(v)]
    if bad:
        flags.append(f'not a finite number: {", ".join(f"{k}={values[k]!r}" for k in bad)}')
    elif any(v < 0 for v in values.values()):
        flags.append(f'negative metrics: {", ".join(f"{k}={v}" for k, v in values.items())} '
                     f'(COCOeval gives -1 when there was no ground truth to score)')
    elif all(v == 0 for v in values.values()):
        flags.append(f'all-zero result ({", ".join(names)} are all 0): the model predicts '
                     f'nothing right (NaN or untrained weights, another model\'s checkpoint, '
                     f'or classes that do not match the annotations)')
    return flags


def _is_finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def write_run_record(work_dir, cfg, metrics, config, checkpoint, tta, world_size, env,
                     partial=None, allowed=(), source='test', **extra):
    """``config.py``, ``env.json`` and ``metrics.json`` of a finished evaluation; returns
    the result's flags (:func:`result_flags`), which the record carries too.

    ``partial``: the key mismatch of a checkpoint evaluated with ``--allow-partial``; such
    a record goes to :data:`PARTIAL_RECORD`, never to ``metrics.json``. ``allowed``: the
    pre-flight checks let through (``--allow``). ``source`` and ``extra`` fields: see
    :mod:`.schema` (``imported`` records also need ``origin``).
    """
    os.makedirs(work_dir, exist_ok=True)
    config_py = osp.join(work_dir, 'config.py')
    write_file_atomic(cfg.pretty_text, config_py)
    write_json_atomic(osp.join(work_dir, 'env.json'), env)
    plain = {k: _plain(v) for k, v in metrics.items()}
    flags = result_flags(cfg.default_scope, plain)
    record = dict(
        record_version=RECORD_VERSION, source=source,
        metrics=plain, flags=flags,
        config=config_ref(config), config_digest=file_sha256(config_py),
        checkpoint=osp.abspath(checkpoint) if osp.exists(checkpoint) else checkpoint,
        checkpoint_sha256=extra.pop('checkpoint_sha256', None) or file_sha256(checkpoint),
        task=cfg.default_scope, tta=bool(tta), world_size=int(world_size),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        allowed_checks=sorted(allowed), **run_description(cfg), **extra)
    if partial:
        record['partial_checkpoint'] = partial
    write_json_atomic(osp.join(work_dir, PARTIAL_RECORD if partial else 'metrics.json'),
                      record)
    return flags


class RunError(ValueError):
    """A run folder that cannot be used (reported and skipped)."""


def stamp_record(folder, **fields):
    """Set ``fields`` (e.g. ``source='release'`` and the release's details) in the record
    of ``folder``, validated by the schema before it is written (atomically)."""
    path = osp.join(folder, 'metrics.json')
    with open(path) as f:
        rec = json.load(f)
    rec.update(fields)
    problems = validate_run(folder, rec)
    if problems:
        raise RunError('; '.join(problems))
    write_json_atomic(path, rec)
    return rec


# ---- inputs ---------------------------------------------------------------------------
def _row_of(config, key):
    """The metadata row of a run: by its config file, unless the record says it built
    another backbone (e.g. ``--cfg-options model.backbone.arch=...``)."""
    row = row_for_config(config)
    if row is not None and (not key[1] or (row.type, row.arch) == (key[0], key[1])):
        return row
    return row_for_backbone(*key) if key[1] else None


def load_run(folder):
    """Parse and validate ``folder/metrics.json``; raise RunError with the reason."""
    path = osp.join(folder, 'metrics.json')
    if not osp.isfile(path):
        if osp.isfile(osp.join(folder, PARTIAL_RECORD)):
            raise RunError(f'only {PARTIAL_RECORD}: evaluated with --allow-partial, with a '
                           f'checkpoint that did not fit the model')
        raise RunError('no metrics.json')
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError) as err:
        raise RunError(f'metrics.json is not valid JSON ({err})') from None
    if isinstance(rec, dict) and rec.get('flags') and isinstance(rec['flags'], list):
        raise RunError(f'flagged by tools/test.py: {"; ".join(map(str, rec["flags"]))}')
    if isinstance(rec, dict) and rec.get('partial_checkpoint'):
        raise RunError('evaluated with --allow-partial (checkpoint did not fit the model)')
    problems = validate_run(folder, rec)  # every field, unit and provenance (.schema)
    if problems:
        raise RunError('; '.join(problems))
    task = {'mmdet': 'det', 'mmseg': 'seg'}[rec['task']]
    flags = result_flags(task, rec['metrics'])
    if flags:
        raise RunError(flags[0])
    needed = DET_METRICS if task == 'det' else SEG_METRICS
    values = {col: float(rec['metrics'][key]) for col, key in needed.items()}
    # mmdet reports AP in [0, 1], the paper in percent; mmseg's mIoU is already percent.
    values = {c: round(v * 100, 1) if task == 'det' else round(v, 2) for c, v in values.items()}
    backbone = rec.get('backbone') or {}
    key = (backbone.get('type'), backbone.get('arch'))
    row = _row_of(str(rec.get('config', '')), key)
    release = rec.get('release') if rec['source'] == 'release' else None
    if isinstance(release, dict) and isinstance(release.get('row'), str):
        # a re-evaluated release names its table row (its config may be a release/ variant)
        row = next((r for r in load_rows() if r.backbone == release['row']), None)
        backbone = dict(backbone, model_name=release['row'])
    name = row.backbone if row else (backbone.get('model_name') or
                                     '-'.join(str(k) for k in key if k) or 'unknown')
    return dict(task=task, size=row.size if row else '', backbone=name, values=values,
                tta=rec['tta'], source=rec['source'],
                toy=bool(rec.get('toy')), config=osp.basename(str(rec.get('config', ''))),
                gpus=rec.get('world_size', ''), schedule=rec.get('schedule', ''),
                date=str(rec.get('date', '')), run=osp.basename(folder.rstrip('/')),
                token_mixing=row.token_mixing if row else '')


def collect_runs(runs_dir, log=print, skipped=None):
    """Every usable run below ``runs_dir`` (one folder each); the others are logged (and
    appended to ``skipped`` as ``(folder name, reason)``)."""
    runs = []
    if not osp.isdir(runs_dir):
        log(f'[leaderboard] no runs folder {runs_dir}: published numbers only')
        return runs
    for name in sorted(os.listdir(runs_dir)):
        folder = osp.join(runs_dir, name)
        if not osp.isdir(folder):
            continue
        try:
            runs.append(load_run(folder))
        except RunError as err:
            log(f'[leaderboard] skipped run {name}: {err}')
            if skipped is not None:
                skipped.append((name, str(err)))
    return runs
