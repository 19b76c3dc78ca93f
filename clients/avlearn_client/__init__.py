"""avlearn_client: a Python client for the avlearn gRPC service (grpc + protobuf + numpy; no torch)."""

from avlearn_client.client import Client, default_server, media_input
from avlearn_client.types import AvlearnError, Hit, IndexInfo, Job, SearchResult, Timings
from avlearn_proto.records import Localization

__all__ = ["Client", "AvlearnError", "Hit", "IndexInfo", "Job", "Localization", "SearchResult", "Timings", "default_server", "media_input"]
