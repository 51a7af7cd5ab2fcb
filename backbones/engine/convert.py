"""Converting an ImageNet checkpoint into a backbone's own key layout, verified before writing
(``tools/convert_checkpoint.py``)."""
import torch

from ..models import backbone_class
from .checkpoint import load_state_dict_strict, unwrap_state_dict
from .fileio import write_file_atomic


def convert_checkpoint(src, dst, backbone, arch, prefix=None, extra_args=None):
    """Convert an ImageNet checkpoint ``src`` to ``backbone``'s own keys, verify it by a
    strict load into a freshly built backbone, and write ``dst`` atomically as
    ``{'state_dict': ...}``; return (number of tensors, number of parameters)."""
    cls = backbone_class(backbone)
    # the class's own reader: it knows its release's containers (e.g. CSWin's EMA weights)
    state_dict = unwrap_state_dict(cls.read_checkpoint(src), prefix=prefix)
    converted = dict(cls.convert_pretrained(state_dict))

    model = cls(arch=arch, **(extra_args or {}))
    load_state_dict_strict(model, converted, allow_missing=cls.new_key_prefixes,
                           source=f'{src} (converted)')
    # DST must load through init_cfg, which converts again: that has to be the identity.
    again = cls.convert_pretrained(converted)
    if list(again) != list(converted) or not all(
            again[k] is converted[k] or torch.equal(again[k], converted[k]) for k in again):
        raise RuntimeError(f'{cls.__name__}.convert_pretrained is not the identity on its '
                           f'own output; DST would not load through init_cfg')
    write_file_atomic(lambda f: torch.save({'state_dict': converted}, f), dst)
    return len(converted), sum(v.numel() for v in converted.values())
