"""One log-once helper for the package: through mmengine's current logger when it exists."""
import logging

__all__ = ['log_once', 'print_log']

_logged = set()


def print_log(msg, logger=None, level=logging.INFO):
    """mmengine's ``print_log`` where mmengine imports, else the ``backbones`` logger (a
    bare GPU machine has no mmengine)."""
    try:
        from mmengine.logging import print_log as mm_print_log
    except ImportError:
        logging.getLogger('backbones').log(level, msg)
        return
    mm_print_log(msg, logger=logger, level=level)


def log_once(msg, level=logging.INFO):
    """Log ``msg`` the first time it is seen in this process; later calls are silent."""
    if msg in _logged:
        return
    _logged.add(msg)
    try:
        from mmengine.logging import print_log
    except ImportError:  # pragma: no cover - mmengine is a dependency of the suite
        logging.getLogger('backbones').log(level, msg)
        return
    print_log(msg, logger='current', level=level)
