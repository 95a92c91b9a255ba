"""Command-line tools: evaluate, export, launch (distributed), plots and tables."""
