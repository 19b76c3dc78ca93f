"""The archive -> embeddings pipeline: batch-embed a video archive into resumable embedding shards.

Stages (clip-retrieval style, shared by the local and Ray engines):
reader (plan + decode) -> mapper (Embedder, batched) -> writer (atomic shards) -> runner.
``run_embed`` (embed.py) is the entry point; ``avlearn.index.build`` turns the shards into a
bundle. The ``indexer`` app (`avlearn embed`, `avlearn index`) and the service's embed jobs call it.
"""
