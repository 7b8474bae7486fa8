"""`plait serve --ray`: the same OpenAI-compatible API served by N engine replicas on Ray Serve.

prefix_index (the router's block-hash prefix tree and its routing policy, no Ray), router (the
Ray Serve `RequestRouter` over it), replica (one engine replica: the single-process server's app
and engine loop, driven in-process), ingress (the HTTP front: forwards each request whole to the
replica the router picks, retries what was not streamed yet, aggregates /metrics), deploy
(start the deployment on a cluster, stop it with a drain), cli (the `--ray` options).

Ray is imported lazily (inside functions): `plait serve` without `--ray` never loads it.
"""
