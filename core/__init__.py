"""The distillation trainer: threading defaults, LR schedule, checkpoints,
teacher loading, the student+losses block, metrics and the training loop."""
