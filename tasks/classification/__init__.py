"""Classification with knowledge transfer (tasks/classification/task.py)."""
