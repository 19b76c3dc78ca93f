"""avlearn_client."""
