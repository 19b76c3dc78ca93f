"""avlearn.data: sources (folder | manifest | AudioSet CSV) -> clip spans, the AudioSet ontology,
``avlearn prepare`` (decode once into WebDataset shards), the segment-record reader, and the
synthetic world generator.

Submodules are imported on use (``from avlearn.data.sources import load_source``); this package
imports nothing heavy, so decoder child processes and ``avlearn --help`` stay light.
"""
