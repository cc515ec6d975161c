"""The engine: the model families' prompt (`prompt.py`), pairs encoded exactly as the processor would
(`encoding.py`), weights found and loaded (`weights.py`), the image cache (`cache.py`), the scorer
that batches and reuses the shared prefix (`scorer.py`), the naive reference (`naive.py`), and
random checkpoints for tests and the demo (`random_model.py`). The only part that imports torch.
"""
