"""What runs produce for people: evaluation, videos, plots, reports, benchmarks."""
