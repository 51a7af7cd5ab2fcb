"""MambaOut backbone (placeholder until issue 3 lands)."""
__all__ = []
