"""Float training and fine-tuning (with optional distillation), single process or torchrun DDP."""
from .finetune import finetune, finetune_config
from .loop import TrainConfig, train

__all__ = ["TrainConfig", "train", "finetune", "finetune_config"]
