"""Speed benchmarks (run them on a quiet machine; they print JSON as their last line)."""
