"""The bundled sample data: a simulated corpus and the tiny Qwen3.5-MoE checkpoint trained on it.

The corpus comes from simulated agents in simulated worlds; this package also knows where both are
found when Horizon Lens is installed as a wheel.
"""

from horizonlens.sample.bundled import sample_checkpoint, sample_corpus
from horizonlens.sample.generate import Planted, generate_corpus

__all__ = ["Planted", "generate_corpus", "sample_checkpoint", "sample_corpus"]
