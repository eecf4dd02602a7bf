"""Structural reparameterization: train form → deploy form (exact), plus model statistics."""

from .walker import official_fuse, reparameterize
from .stats import count_params, depth, flops

__all__ = ["count_params", "depth", "flops", "official_fuse", "reparameterize"]
