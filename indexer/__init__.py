"""The indexer app: `avlearn embed` and `avlearn index build|info`, thin shells over
``avlearn.pipeline`` (archive -> embedding shards) and ``avlearn.index.build`` (shards -> bundle).
"""
