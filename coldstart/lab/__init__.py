"""The lab: deploy one (model, experiment) on Ray Serve LLM from zero replicas and time its first token.

``service`` builds the Serve application (``llm_config``) and runs it (``serve``), ``replica_hooks`` is the
callback inside each replica, ``client`` times the first streamed token, ``caches`` resets the node between
cold runs, ``matrix`` repeats all of it over the (model, experiment) matrix and appends result rows,
``configs`` writes the Serve YAMLs and ``import_runs`` brings in runs made on other machines. It sits on top:
it uses ``compile_cache``, ``storage``, ``analysis`` (events, parsing, result rows) and the core.
"""
