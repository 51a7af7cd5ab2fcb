"""Start-up shared by the command-line tools: config loading, work dirs, CPU adaptation.

The tools serve mmdet and mmseg configs: the config's ``default_scope`` picks the library;
``backbones`` (this package) is imported before anything is built.
"""
import os
import os.path as osp
import sys

from .runtime import adapt_cfg_to_device, init_cpu_distributed

#: The checkout this (editable) package lives in: configs, results and tools are found here.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

SCOPES = {'mmdet': 'mmdet.utils', 'mmseg': 'mmseg.utils'}


def load_config(path, cfg_options=None):
    """Load a config, refusing with a message that names the file and line (a config that
    does not parse or run), the option (``--cfg-options`` of the wrong type, a list index
    that does not exist, a variable that is no longer read) or the scope."""
    from mmengine.config import Config

    from ..preflight.config import check_cfg_options
    if osp.isdir(path):
        sys.exit(f'error: {path} is a folder; name a config file (.py) inside it')
    if not osp.isfile(path):
        sys.exit(f'error: config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except Exception as err:
        sys.exit(f'error: {config_error(path, err)}')
    if cfg_options:
        problems = check_cfg_options(cfg, cfg_options)
        if problems:
            sys.exit(f'error: {path}: --cfg-options cannot be applied:\n' +
                     '\n'.join(f'  - {p}' for p in problems))
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as err:
            sys.exit(f'error: {path}: --cfg-options cannot be applied: '
                     f'{type(err).__name__}: {err}')
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        sys.exit(f"error: {path}: default_scope must be one of {sorted(SCOPES)}, got {scope!r}")
    __import__(SCOPES[scope], fromlist=['register_all_modules']).register_all_modules(
        init_default_scope=False)
    return cfg


def _bases(path):
    """Local files named by ``path``'s ``_base_`` (package bases ``pkg::...`` left out)."""
    import ast
    try:
        tree = ast.parse(open(path).read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_'
                                                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            names = value if isinstance(value, (list, tuple)) else [value]
            return [osp.normpath(osp.join(osp.dirname(path), n)) for n in names
                    if isinstance(n, str) and '::' not in n]
    return []


def _chain(path, seen=None):
    """``path`` and every local base it inherits from, depth first."""
    seen = seen if seen is not None else []
    if path not in seen:
        seen.append(path)
        for base in _bases(path):
            if osp.isfile(base):
                _chain(base, seen)
    return seen


def config_error(path, err):
    """What is wrong with the config ``path`` that mmengine could not load, naming the file
    and line: mmengine reports syntax errors as ``<unknown>`` and runtime errors with a
    traceback through its own code."""
    import traceback
    files = _chain(osp.abspath(path))
    if isinstance(err, SyntaxError):
        for name in files:
            try:
                compile(open(name).read(), name, 'exec')
            except SyntaxError as found:
                text = (found.text or '').strip()
                return (f'{name}:{found.lineno}: the config does not parse: {found.msg}'
                        + (f'\n    {text}' if text else ''))
        return f'{path}: the config does not parse: {err}'
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if osp.abspath(f.filename) in files]
    where = f'{frames[-1].filename}:{frames[-1].lineno}' if frames else path
    detail = f'{type(err).__name__}: {str(err).strip() or "(no details)"}'
    if isinstance(err, FileNotFoundError) and err.filename:
        parent = next((f for f in files if osp.normpath(err.filename) in _bases(f)), None)
        if parent:
            return f'{parent}: its _base_ {err.filename} does not exist'
    line = frames[-1].line if frames else ''
    return f'{where}: the config cannot be loaded: {detail}' + (f'\n    {line}' if line else '')


def work_dir_problem(work_dir):
    """Why ``work_dir`` cannot be used for a run (nothing is created), or None."""
    import errno
    import tempfile
    path = osp.abspath(work_dir)
    probe = path
    while not osp.exists(probe):
        parent = osp.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if osp.exists(path) and not osp.isdir(path):
        return f'--work-dir {work_dir} is a file, not a folder'
    if not osp.isdir(probe):
        return (f'--work-dir {work_dir} cannot be created: {probe} is a file, not a folder')
    try:  # the real test, for root too: create (and remove) an entry where the run will
        tempfile.TemporaryDirectory(dir=probe, prefix='.probe-').cleanup()
    except OSError as err:
        what = {errno.EROFS: 'the file system is read-only',
                errno.EACCES: 'permission denied', errno.EPERM: 'permission denied',
                errno.ENOSPC: 'the disk is full'}.get(err.errno, err.strerror or str(err))
        return f'--work-dir {work_dir} cannot be written: {what} (at {probe})'
    if path != probe:  # names it will create: too long for the file system?
        limit = os.pathconf(probe, 'PC_NAME_MAX')
        long = [p for p in osp.relpath(path, probe).split(os.sep) if len(p.encode()) > limit]
        if long:
            return (f'--work-dir {work_dir} cannot be created: the name {long[0][:40]}... '
                    f'is {len(long[0].encode())} bytes long, the file system takes {limit}')
    return None


def cfg_options_action():
    """mmengine's ``DictAction`` for ``--cfg-options``, with a usage error (exit 2) for an
    item that is not ``KEY=VALUE`` instead of a traceback."""
    from mmengine.config import DictAction

    class CfgOptions(DictAction):
        def __call__(self, parser, namespace, values, option_string=None):
            bad = [v for v in values if '=' not in v or v.startswith('=')]
            if bad:
                parser.error(f'{option_string} {bad[0]!r}: expected KEY=VALUE, e.g. '
                             f'train_cfg.max_epochs=2 (no spaces around "=")')
            super().__call__(parser, namespace, values, option_string)
    return CfgOptions


def add_allow_argument(parser):
    from ..preflight.checks import ALLOWABLE
    parser.add_argument('--allow', nargs='+', default=[], metavar='CHECK',
                        choices=sorted(ALLOWABLE),
                        help='let one pre-flight check through (a warning instead), keeping '
                             'every other: ' + '; '.join(f'{k}: {v}'
                                                         for k, v in ALLOWABLE.items()))


def default_work_dir(config):
    return osp.join('work_dirs', osp.splitext(osp.basename(config))[0])


def setup_device(cfg, launcher):
    """CPU adaptations (logged through mmengine's logger once the Runner exists)."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = '0'
    init_cpu_distributed(launcher)
    notes = []
    adapt_cfg_to_device(cfg, launcher, log=notes.append)
    return notes


def log_notes(notes):
    from mmengine.logging import print_log
    for note in notes:
        print_log(note, logger='current', level=30)  # WARNING: visible in every log


def find_configs(paths):
    """Config files in ``paths`` (files, or folders searched recursively, ``_base_`` and
    ``release`` left out: the latter holds evaluation-only configs of released checkpoints,
    ``tools/reproduce.py release``), sorted per folder; a path that does not exist is an
    error."""
    import glob
    found = []
    for path in paths:
        if osp.isdir(path):
            found += sorted(p for p in glob.glob(osp.join(path, '**', '*.py'), recursive=True)
                            if not {'_base_', 'release'} & set(p.split(osp.sep)))
        elif osp.isfile(path):
            found.append(path)
        else:
            sys.exit(f'error: no such config or folder: {path}')
    return found


def build_model(config, cfg_options=None):
    """Load ``config`` and build its model in the config's scope: ``(cfg, model)``."""
    from mmengine.registry import MODELS, DefaultScope
    cfg = load_config(config, cfg_options)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return cfg, MODELS.build(cfg.model)
