"""The bundled sample data: simulated agents in simulated worlds (the corpus), the tiny Qwen3.5-MoE
trained on it (the checkpoint), and where both are found when Horizon Lens is installed as a wheel.
"""

from horizonlens.sample.bundled import sample_checkpoint, sample_corpus
from horizonlens.sample.generate import Planted, generate_corpus

__all__ = ["Planted", "generate_corpus", "sample_checkpoint", "sample_corpus"]
