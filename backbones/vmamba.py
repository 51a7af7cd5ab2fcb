"""VMamba backbones (placeholder until issue 4 lands)."""
__all__ = []
