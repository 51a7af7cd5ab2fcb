"""The one schema every run record passes before it reaches the leaderboard or the tables.

A run folder holds ``metrics.json`` (the record) and ``config.py`` (the resolved config the
run used). :func:`validate_run` checks a record against the schema below and against that
config, and returns every problem found; a record with any is left out of the tables (and
is an error under ``tools/leaderboard.py --strict``). Nothing in a record is trusted
unchecked: a percent AP would otherwise show up as 4510.0, a fraction mIoU as 0.48, a
string ``"false"`` would fill a boolean column.

Fields (record version 2):

=====================  =================================================================
``record_version``     2
``source``             who wrote it: ``test`` (``tools/test.py``, also through
                       ``dist_test.sh`` and ``reproduce.py toy/full``), ``release``
                       (``reproduce.py release``: a released checkpoint re-evaluated by
                       ``tools/test.py``), ``imported`` (``tools/import_run.py``)
``task``               ``mmdet`` / ``mmseg``: must be the ``default_scope`` of config.py
``metrics``            mmdet: ``coco/{bbox,segm}_mAP{,_50,_75}`` as fractions in [0, 1]
                       (mmdet's own unit; the tables print percent); mmseg: ``mIoU`` and,
                       when present, ``aAcc`` / ``mAcc``, in percent [0, 100] (mmseg's
                       unit) with mIoU <= mAcc; numbers only (never strings or booleans)
``flags``              list of strings; non-empty = flagged by tools/test.py, never tabled
``config``             the config file the run was started with, repo-relative when inside
                       the checkout; it must exist
``config_digest``      sha256 of the folder's ``config.py`` (provenance: ties the numbers
                       to the resolved config; an edited or swapped config.py fails)
``checkpoint``         the evaluated checkpoint's path (informative)
``checkpoint_sha256``  sha256 of the evaluated checkpoint file (provenance)
``origin``             ``imported`` only: where the numbers come from (URL, paper, log)
``release``            ``release`` only: ``{row, sha256, ...}``, ``row`` a row of
                       ``results/releases.csv`` for the record's task (it picks the table
                       row), ``sha256`` the released file's
``tta``, ``toy``       booleans
``world_size``         integer >= 1
``date``               ISO 8601 date-time
``schedule``           string (``12e``, ``160000i``, ``''``)
``backbone``           ``{type, arch, model_name}``: must be config.py's model.backbone
``allowed_checks``     pre-flight checks a user let through (``--allow ID``); a record
                       whose check makes its numbers unfit for a table is refused
=====================  =================================================================

Provenance = ``source``, ``config`` (existing), ``config_digest`` (matching config.py),
``checkpoint_sha256`` (64 hex digits) and, for ``imported``, ``origin``, for ``release``,
``release.row`` (in the manifest) and ``release.sha256``: exactly these are required.
Fields not listed are ignored (a writer may add its own).
"""
import datetime
import hashlib
import math
import os.path as osp
import re

from ..engine.launch import REPO

__all__ = ['RECORD_VERSION', 'SOURCES', 'DET_METRICS', 'SEG_METRICS', 'TABLE_UNFIT_CHECKS',
           'file_sha256', 'config_ref', 'resolve_config', 'validate_record', 'validate_run',
           'check_metrics']

RECORD_VERSION = 2
SOURCES = ('test', 'release', 'imported')
# leaderboard column -> key in mmdet / mmseg metrics
DET_METRICS = {'ap_box': 'coco/bbox_mAP', 'ap_box_50': 'coco/bbox_mAP_50',
               'ap_box_75': 'coco/bbox_mAP_75', 'ap_mask': 'coco/segm_mAP',
               'ap_mask_50': 'coco/segm_mAP_50', 'ap_mask_75': 'coco/segm_mAP_75'}
SEG_METRICS = {'miou': 'mIoU'}
SEG_PERCENT = ('aAcc', 'mIoU', 'mAcc')
#: Pre-flight checks whose exception makes the numbers no table result (evaluated on
#: the training split).
TABLE_UNFIT_CHECKS = ('eval-on-train',)
_HEX64 = re.compile(r'[0-9a-f]{64}')


def file_sha256(path, chunk=1 << 22):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def config_ref(config):
    """How a record names its config: repo-relative inside the checkout, else absolute
    (so records stay valid in another clone of the repo)."""
    path = osp.abspath(config)
    rel = osp.relpath(path, REPO)
    return path if rel.startswith('..') else rel


def resolve_config(ref):
    return ref if osp.isabs(ref) else osp.join(REPO, ref)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _not_number(key, value):
    if isinstance(value, float):
        return f'metrics {key} is {value!r}: not finite'
    return f'metrics {key} is {value!r} ({type(value).__name__}), not a number'


def check_metrics(task, metrics):
    """Problems with the headline metrics of a ``task`` ('mmdet' / 'mmseg') record: present,
    numbers, in the unit the suite writes. Flags (NaN, all zero) are :func:`runs.result_flags`'
    business; here a value that cannot be what mmdet / mmseg wrote is refused."""
    if not isinstance(metrics, dict):
        return [f'metrics is a {type(metrics).__name__}, not an object']
    problems = []
    if task == 'mmdet':
        for key in DET_METRICS.values():
            value = metrics.get(key)
            if key not in metrics:
                problems.append(f'metrics lacks {key}')
            elif not _is_number(value):
                problems.append(_not_number(key, value))
            elif value == -1:
                continue  # COCOeval's "no ground truth": result_flags reports it
            elif 1 < value <= 100:
                problems.append(f'metrics {key} is {value}: AP in percent, but mmdet writes '
                                f'it as a fraction of 1 ({value / 100:.3f}); the tables '
                                f'would show {round(value * 100, 1)}')
            elif not 0 <= value <= 1:
                problems.append(f'metrics {key} is {value}, outside [0, 1]')
        return problems
    present = {k: metrics[k] for k in SEG_PERCENT if k in metrics}
    if 'mIoU' not in metrics:
        problems.append('metrics lacks mIoU')
    for key, value in present.items():
        if not _is_number(value):
            problems.append(_not_number(key, value))
        elif not 0 <= value <= 100:
            problems.append(f'metrics {key} is {value}, outside [0, 100] (percent)')
    numbers = {k: v for k, v in present.items() if _is_number(v) and 0 <= v <= 100}
    if problems or 'mIoU' not in numbers:
        return problems
    if 0 < numbers['mIoU'] <= 1 and all(v <= 1 for v in numbers.values()):
        problems.append(f'metrics {", ".join(f"{k}={v}" for k, v in numbers.items())}: '
                        f'fractions of 1, but mmseg writes percent ({numbers["mIoU"]} would '
                        f'read as {numbers["mIoU"]}% mIoU; did you mean '
                        f'{round(numbers["mIoU"] * 100, 2)}?)')
    elif 'mAcc' in numbers and numbers['mIoU'] > numbers['mAcc']:
        problems.append(f'metrics mIoU={numbers["mIoU"]} is above mAcc={numbers["mAcc"]}, '
                        f'which no evaluation gives (IoU <= accuracy per class): mixed '
                        f'units or swapped values')
    return problems


def _field(rec, key, check, expected, problems, required=True):
    if key not in rec:
        if required:
            problems.append(f'{key} is missing ({expected})')
        return
    if not check(rec[key]):
        problems.append(f'{key} is {rec[key]!r}, expected {expected}')


def _iso_date(value):
    if not isinstance(value, str):
        return False
    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _release_problems(rec):
    """A re-evaluated release names its manifest row (which places it in the tables) and
    the released file's sha256."""
    release = rec.get('release')
    if not isinstance(release, dict):
        return ['release is missing (source release: {row, sha256, ...} of the manifest row '
                're-evaluated)']
    problems = []
    if not (isinstance(release.get('sha256'), str) and _HEX64.fullmatch(release['sha256'])):
        problems.append(f'release.sha256 is {release.get("sha256")!r}, expected the sha256 '
                        f'(64 hex digits) of the released file')
    from ..metadata import RELEASES_CSV, load_releases
    task = {'mmdet': 'det', 'mmseg': 'seg'}.get(rec.get('task'))
    rows = {r.row for r in load_releases() if r.task == task} if osp.isfile(RELEASES_CSV) \
        else set()
    if release.get('row') not in rows:
        problems.append(f'release.row is {release.get("row")!r}, not a {task} row of '
                        f'{osp.relpath(RELEASES_CSV, REPO)}')
    return problems


def validate_record(rec):
    """Problems with the record ``rec`` on its own (types, ranges, provenance fields)."""
    if not isinstance(rec, dict):
        return [f'the record is a {type(rec).__name__}, not a JSON object']
    problems = []
    if rec.get('record_version') != RECORD_VERSION:
        problems.append(f'record_version is {rec.get("record_version")!r}, expected '
                        f'{RECORD_VERSION} (a record written before provenance was kept: '
                        f'evaluate again with tools/test.py, or bring it in with '
                        f'tools/import_run.py)')
        return problems
    _field(rec, 'source', lambda v: v in SOURCES, f'one of {", ".join(SOURCES)}', problems)
    _field(rec, 'task', lambda v: v in ('mmdet', 'mmseg'), "'mmdet' or 'mmseg'", problems)
    if rec.get('task') in ('mmdet', 'mmseg'):
        problems += check_metrics(rec['task'], rec.get('metrics'))
    _field(rec, 'flags', lambda v: isinstance(v, list) and all(isinstance(f, str) for f in v),
           'a list of strings', problems)
    _field(rec, 'config', lambda v: isinstance(v, str) and v.endswith('.py'),
           'the path of a .py config', problems)
    _field(rec, 'config_digest', lambda v: isinstance(v, str) and _HEX64.fullmatch(v),
           "the sha256 (64 hex digits) of the run folder's config.py", problems)
    _field(rec, 'checkpoint_sha256', lambda v: isinstance(v, str) and _HEX64.fullmatch(v),
           'the sha256 (64 hex digits) of the evaluated checkpoint', problems)
    if rec.get('source') == 'imported':
        _field(rec, 'origin', lambda v: isinstance(v, str) and v.strip(),
               'where the imported numbers come from (URL, paper, log)', problems)
    if rec.get('source') == 'release':
        problems += _release_problems(rec)
    for key in ('tta', 'toy'):
        _field(rec, key, lambda v: isinstance(v, bool), 'true or false (a JSON boolean)',
               problems)
    _field(rec, 'world_size', lambda v: isinstance(v, int) and not isinstance(v, bool)
           and v >= 1, 'an integer >= 1', problems)
    _field(rec, 'date', _iso_date, 'an ISO 8601 date-time', problems)
    _field(rec, 'schedule', lambda v: isinstance(v, str), 'a string', problems)
    _field(rec, 'backbone', lambda v: isinstance(v, dict) and all(
        v.get(k) is None or isinstance(v.get(k), str) for k in ('type', 'arch', 'model_name'))
        and isinstance(v.get('type'), str), '{type, arch, model_name} strings', problems)
    _field(rec, 'allowed_checks', lambda v: isinstance(v, list) and all(
        isinstance(c, str) for c in v), 'a list of check ids', problems, required=False)
    unfit = sorted(set(rec.get('allowed_checks') or ()) & set(TABLE_UNFIT_CHECKS)) \
        if isinstance(rec.get('allowed_checks'), list) else []
    if unfit:
        problems.append(f'evaluated with --allow {" ".join(unfit)}: numbers measured on the '
                        f'training split are not a table result')
    return problems


def _config_backbone(cfg):
    model = cfg.get('model') or {}
    backbone = (model.get('module') or model).get('backbone') or {}
    return {k: backbone.get(k) for k in ('type', 'arch', 'model_name')}


def validate_run(folder, rec):
    """Problems of the record ``rec`` of run ``folder``: :func:`validate_record`, then
    against the folder's config.py (digest, task, backbone) and the named config file."""
    problems = validate_record(rec)
    if problems:
        return problems
    resolved = resolve_config(rec['config'])
    if not osp.isfile(resolved):
        problems.append(f'config {rec["config"]} does not exist (looked for {resolved}): '
                        f'the run cannot be placed in the tables')
    dumped = osp.join(folder, 'config.py')
    if not osp.isfile(dumped):
        return problems + ['config.py is missing from the run folder (the resolved config '
                           'the record\'s config_digest names)']
    digest = file_sha256(dumped)
    if digest != rec['config_digest']:
        return problems + [f'config.py does not match the record: its sha256 is '
                           f'{digest[:12]}..., the record says {rec["config_digest"][:12]}... '
                           f'(edited after the run, or copied from another run)']
    from mmengine.config import Config
    try:
        cfg = Config.fromfile(dumped)
    except Exception as err:
        return problems + [f'config.py cannot be read: {type(err).__name__}: {err}']
    if cfg.get('default_scope') != rec['task']:
        problems.append(f'task is {rec["task"]!r}, but config.py is an '
                        f'{cfg.get("default_scope")!r} config')
    ours = _config_backbone(cfg)
    claimed = {k: rec['backbone'].get(k) for k in ours}
    if ours != claimed:
        problems.append(f'backbone {claimed} is not the one config.py builds ({ours})')
    if rec['tta'] != isinstance((cfg.get('model') or {}).get('module'), dict):
        problems.append(f'tta is {rec["tta"]}, but config.py ' + (
            'wraps the model for test-time augmentation' if not rec['tta'] else
            'has no test-time augmentation model'))
    return problems
