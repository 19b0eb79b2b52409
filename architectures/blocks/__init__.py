"""Attention primitives shared by the architectures, one concept per module, N-D (2D and 3D)."""
