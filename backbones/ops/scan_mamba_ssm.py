"""The ``mamba_ssm`` selective-scan backend: the CUDA kernel of the ``mamba-ssm`` package."""
import torch

_fn = None
_error = None


def load():
    """``mamba_ssm``'s ``selective_scan_fn``, or None; the import error is kept in ``error()``."""
    global _fn, _error
    if _fn is None and _error is None:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
            _fn = selective_scan_fn
        except Exception as err:  # noqa: BLE001 - a broken build must not crash a run
            _error = f'{type(err).__name__}: {err}'
    return _fn


def error():
    return _error


def selective_scan_mamba_ssm(u, delta, A, B, C, D=None, delta_bias=None,
                             delta_softplus=False):
    fn = load()
    with torch.autocast(device_type='cuda', enabled=False):
        args = [t.float().contiguous() if t is not None else None
                for t in (u, delta, A, B, C, D, delta_bias)]
        u, delta, A, B, C, D, delta_bias = args
        return fn(u, delta, A, B, C, D, z=None, delta_bias=delta_bias,
                  delta_softplus=delta_softplus, return_last_state=False)
