"""The fast path: Ray Serve LLM's own extension points used to take steps out of a replica's cold start.

- ``server.ColdStartLLMServer`` (LLMConfig ``server_cls``): picks the engine class, keeps the replica's
  runtime_env empty so a prestarted worker can be given to it.
- ``engine.InReplicaVLLMEngine`` (the engine class): vLLM's config built in the replica, the GPU worker run
  inside EngineCore (uni/mp executor) instead of Ray actors; optionally EngineCore forked from a forkserver.
- ``preload``: what Ray's ``preload_python_modules`` imports in every prestarted worker before a request.
- ``forkserver``: a multiprocessing forkserver with vLLM imported, and a Process that carries its parent's env.
- The node-init skip lives in the replica callback (``coldstart.replica_hooks``).
"""
