"""Choosing a head count that divides a stage's channels (nnU-Net plans have 32, 64, ..., 320, 512)."""


def heads_for(channels: int, max_heads: int) -> int:
    """The largest head count ``<= max_heads`` that divides ``channels``."""
    return next(h for h in range(min(max_heads, channels), 0, -1) if channels % h == 0)
