"""Behaviour every dense-prediction backbone of the suite shares.

Subclasses build their layers, then describe them to this base through three hooks:

* ``stem``: the module before stage 0 (patch embedding / conv stem);
* ``stage_modules(i)``: every module that belongs to stage ``i`` (its blocks, its
  downsampling layer, its output norm), used by ``frozen_stages``;
* ``convert_pretrained(state_dict)``: map a classification checkpoint (any supported
  release format) onto this module's own key names, dropping the classifier.

and a generator ``_run_stages(x)`` yielding ``(stage index, NHWC output)`` for every index
of ``out_indices`` (stopping after the last one).

The base then provides ``forward`` (output norms, NCHW), ``forward_stages`` (before the
norms), strict pretrained loading from ``init_cfg``, ``frozen_stages`` and ``norm_eval``
with the mmdet/mmseg meanings, and the argument checks every backbone shares. A subclass
calls ``self._freeze_stages()`` at the end of its ``__init__`` so frozen parameters are
frozen before any optimizer sees them.
"""
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..engine.checkpoint import load_checkpoint_file, load_state_dict_strict, unwrap_state_dict

try:
    from mmengine.logging import print_log
    from mmengine.model import BaseModule
except ModuleNotFoundError as _err:  # a bare GPU machine: mmengine (or its rich) is absent
    if _err.name not in ('mmengine', 'rich'):
        raise
    from ..engine.log import print_log

    class BaseModule(nn.Module):
        """What DenseBackbone uses of mmengine's BaseModule: ``init_cfg`` and an
        ``init_weights`` that runs the children's (mmengine's initializers need mmengine)."""

        def __init__(self, init_cfg=None):
            super().__init__()
            self._is_init = False
            self.init_cfg = init_cfg

        def init_weights(self):
            if self.init_cfg is not None:
                raise RuntimeError(f'{type(self).__name__}: init_cfg {self.init_cfg} needs '
                                   f'mmengine, which is not installed')
            for m in self.children():
                if hasattr(m, 'init_weights'):
                    m.init_weights()
            self._is_init = True


def check_out_indices(out_indices, num_stages):
    out_indices = tuple(out_indices)
    if not out_indices or any(not 0 <= i < num_stages for i in out_indices) \
            or len(set(out_indices)) != len(out_indices):
        raise ValueError(f'out_indices must be distinct stage indices in [0, {num_stages}), '
                         f'got {out_indices}')
    return tuple(sorted(out_indices))


def check_common_args(owner, in_channels, drop_path_rate):
    if not (isinstance(in_channels, int) and in_channels > 0):
        raise ValueError(f'{owner}: in_channels must be a positive int, got {in_channels!r}')
    if not 0. <= drop_path_rate < 1.:
        raise ValueError(f'{owner}: drop_path_rate must be in [0, 1), got {drop_path_rate}')


def positive_ints(values):
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                for v in values)


def per_stage_flags(with_cp, num_stages, owner='backbone'):
    """``with_cp`` as one bool per stage (a single bool applies to all)."""
    if isinstance(with_cp, bool):
        return (with_cp,) * num_stages
    flags = tuple(with_cp)
    if len(flags) != num_stages or not all(isinstance(f, bool) for f in flags):
        raise ValueError(f'{owner}: with_cp must be a bool or {num_stages} bools (one per '
                         f'stage), got {with_cp!r}')
    return flags


class DenseBackbone(BaseModule):
    #: Key prefixes that exist only in the dense model (not in ImageNet checkpoints).
    new_key_prefixes = ('out_norms.',)
    #: Sizes by name; a subclass fills it (see :meth:`lookup_arch`).
    arch_zoo = {}
    #: Text naming the dict form of ``arch`` in error messages.
    arch_dict_help = 'a dict'

    @classmethod
    def lookup_arch(cls, arch):
        """``arch`` as a dict: a name from ``arch_zoo`` or a dict given by the user."""
        names = ', '.join(cls.arch_zoo)
        if isinstance(arch, str):
            if arch not in cls.arch_zoo:
                raise ValueError(f'{cls.__name__}: unknown arch {arch!r}; valid names: '
                                 f'{names} (or {cls.arch_dict_help})')
            return dict(cls.arch_zoo[arch])
        if not isinstance(arch, dict):
            raise ValueError(f'{cls.__name__}: arch must be one of {names} or '
                             f'{cls.arch_dict_help}, got {arch!r}')
        return dict(arch)

    def __init__(self, num_stages, out_indices=(0, 1, 2, 3), frozen_stages=-1,
                 norm_eval=False, with_cp=False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_stages = num_stages
        self.out_indices = check_out_indices(out_indices, num_stages)
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = per_stage_flags(with_cp, num_stages, type(self).__name__)

    def _build_out_norms(self, dims, norm_layer):
        """One output norm per returned stage (``out_norms.<stage>``, Identity elsewhere so
        the key names follow the stage index) and the matching ``out_channels``."""
        self.out_norms = nn.ModuleList([
            norm_layer(dims[i]) if i in self.out_indices else nn.Identity()
            for i in range(self.num_stages)])
        self.out_channels = tuple(dims[i] for i in self.out_indices)

    # ---- hooks for subclasses -------------------------------------------------------
    # ``stem`` is looked up with getattr(): a class attribute ``stem = None`` here would
    # shadow the submodule a subclass registers under that name (nn.Module keeps submodules
    # in ``_modules``, which attribute lookup only reaches after the class dict).

    def stage_modules(self, i):
        raise NotImplementedError

    @classmethod
    def convert_pretrained(cls, state_dict):
        raise NotImplementedError

    def _run_stages(self, x):
        raise NotImplementedError

    # ---- forward --------------------------------------------------------------------
    def forward_stages(self, x):
        """Stage outputs before the output norms (NCHW), e.g. to compare with timm."""
        return tuple(y.permute(0, 3, 1, 2).contiguous() for _, y in self._run_stages(x))

    def forward(self, x):
        return tuple(self.out_norms[i](y).permute(0, 3, 1, 2).contiguous()
                     for i, y in self._run_stages(x))

    # ---- pretrained weights ---------------------------------------------------------
    @staticmethod
    def read_checkpoint(path):
        """The checkpoint object at ``path`` (weights_only; a subclass may read other formats)."""
        return load_checkpoint_file(path)

    def init_weights(self):
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        checkpoint = cfg.get('checkpoint')
        if not checkpoint:
            raise ValueError(f"{type(self).__name__}: init_cfg type 'Pretrained' needs a "
                             f"'checkpoint' (path or URL), got {cfg}")
        state_dict = unwrap_state_dict(self.read_checkpoint(checkpoint),
                                       prefix=cfg.get('prefix'))
        state_dict = self.convert_pretrained(state_dict)
        load_state_dict_strict(self, state_dict, allow_missing=self.new_key_prefixes,
                               source=f'checkpoint {checkpoint}')
        print_log(f'{type(self).__name__}: loaded {len(state_dict)} pretrained tensors from '
                  f'{checkpoint}', logger='current')
        self._is_init = True

    # ---- frozen stages / norm_eval --------------------------------------------------
    def _frozen_modules(self):
        if self.frozen_stages < 0:
            return []
        stem = getattr(self, 'stem', None)
        modules = [stem] if stem is not None else []
        for i in range(self.frozen_stages):
            modules.extend(self.stage_modules(i))
        return modules

    def _freeze_stages(self):
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
