"""Search over the user's own collection: files embedded into a vector database on disk (`store.py`, `indexing.py`),
searched by embedding and reranked (`searching.py`; docs/search.md)."""
