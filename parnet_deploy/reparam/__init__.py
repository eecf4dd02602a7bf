"""Structural reparameterization: train form → deploy form (exact), plus model statistics."""

from .stats import count_params, depth, flops
from .walker import official_fuse, reparameterize

__all__ = ["count_params", "depth", "flops", "official_fuse", "reparameterize"]
