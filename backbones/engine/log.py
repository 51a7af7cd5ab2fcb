"""One log-once helper for the package: through mmengine's current logger when it exists."""
import logging

_logged = set()


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
