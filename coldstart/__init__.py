"""coldstart: a cold-start lab for Ray Serve LLM, and the fast path as an API (``coldstart.fastpath``)."""

__version__ = "0.1.0"  # equal to pyproject.toml's version (tests/test_node_setup.py checks)
