"""Float training and fine-tuning (with optional distillation), single process or torchrun DDP."""
from .loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
