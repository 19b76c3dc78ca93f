"""avlearn_web: the browser page over the gRPC service (Flask, through avlearn_client; no torch)."""
