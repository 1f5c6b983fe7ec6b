"""forgetbench: measure catastrophic forgetting of fine-tuned chat models and the rehearsal recipes that fight it."""

__version__ = "0.1.0"
