"""Generated protobuf/gRPC stubs of proto/avlearn/v1 (do not edit; run proto/generate.py)."""
