"""Batch embedding of a video archive and index building.

Stages (clip-retrieval style, shared by the local and Ray engines):
reader (plan + decode) -> mapper (Embedder, batched) -> writer (atomic shards) -> runner.
``run_embed`` (embed.py) and ``build_bundle`` (build.py) are the entry points; cli.py wraps them.
"""
