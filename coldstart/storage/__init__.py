"""Storage: where model weights live. The object store (S3 or a local folder), staging models into it,
synthetic checkpoints, vLLM sharded state per TP size, and resolving a run's weights before Ray starts."""
