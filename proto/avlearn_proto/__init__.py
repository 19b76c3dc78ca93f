"""avlearn_proto: the wire package, generated protobuf/gRPC stubs of proto/avlearn/v1 (do not edit; run proto/generate.py), and records.py (hand-written typed views of the result messages).

Imported by the server (services) and the client (avlearn_client) alike; needs only grpcio and protobuf.
"""
