"""What the synthetic renderer makes (no imports: the training config names it without loading the renderer)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SyntheticSpec:
    """What :func:`portrait.data.synthetic.generate` renders: ``identities`` x ``views`` samples of ``size``
    pixels; ``test_fraction`` of the source faces (seeded) and every identity built on them are held out."""

    identities: int = 64
    views: int = 4
    size: int = 128
    seed: int = 0
    test_fraction: float = 0.2
