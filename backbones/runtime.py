"""Runtime fixes the pinned OpenMMLab stack needs on current torch.

* torch >= 2.6 loads checkpoints with ``weights_only=True``. mmengine 0.10.7 saves its
  ``MessageHub`` (``HistoryBuffer`` objects holding numpy arrays) into every checkpoint, so
  resuming or testing from its own checkpoints fails. :func:`allow_mmengine_checkpoints`
  adds exactly those classes to torch's allow-list instead of turning ``weights_only`` off,
  so a checkpoint that carries anything else (e.g. pickled code) is still refused.
"""
import numpy as np
import torch


def _numpy_globals():
    """numpy objects that pickled arrays and scalars refer to (numpy 1.x and 2.x names)."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    objs = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    kinds = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
             np.uint64, np.float16, np.float32, np.float64]
    objs += [type(np.dtype(k)) for k in kinds]  # numpy.dtypes.Float64DType & co.
    return objs


def mmengine_checkpoint_globals():
    """Every non-tensor global that mmengine / mmdet / mmseg checkpoints legitimately hold."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer] + _numpy_globals()


def allow_mmengine_checkpoints():
    """Allow-list mmengine's checkpoint contents for ``torch.load(weights_only=True)``."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
