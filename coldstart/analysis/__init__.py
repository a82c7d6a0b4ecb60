"""Analysis: harness events, log parsing, per-run timelines, result rows, tables and graphs.

Imports only the core (``registry``, ``paths``), never ``lab``, ``storage``, ``compile_cache``, Ray, vLLM
or torch: logs can be analysed on any machine (``tests/test_analysis_isolation.py`` checks it).
"""
