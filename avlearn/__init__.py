"""avlearn: self-supervised audio-visual learning from raw video.

The core library. Training (`training/`), the indexer (`indexer/`) and the
service (`services/`) import it; it imports none of them.
"""

__version__ = "0.1.0"
