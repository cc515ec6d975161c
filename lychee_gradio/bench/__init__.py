"""Benchmarks: `python -m lychee_gradio.bench` (see `__main__.py` for what each flag measures)."""
