"""The engine: the model families' prompt (`prompt.py`), pairs encoded exactly as the processor would
(`encoding.py`), weights found and loaded (`weights.py`), the image cache (`cache.py`), the scorer
that batches and reuses the shared prefix (`scorer.py`), the naive reference (`naive.py`),
random checkpoints for tests and the demo (`random_model.py`), and one attention call per vision
layer where flash-attention is absent (`vision_attention.py`, installed by both loaders), and a float32 residual
stream beside bf16 weights on the CPU (`precision.py`, installed by the scorer). The only part that imports torch.
"""
