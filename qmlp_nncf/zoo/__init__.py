"""Committed checkpoints of the trained models and their reference accuracies (``zoo.json``)."""
from .registry import ZooEntry, checkpoint_path, get_entry, list_entries, publish, record_entry

__all__ = ["ZooEntry", "checkpoint_path", "get_entry", "list_entries", "publish", "record_entry"]
