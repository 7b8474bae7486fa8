"""plait serve: an OpenAI-compatible HTTP server over plait's engine (the floor above the wings).

app (routes, errors), completions / chat (endpoints), protocol (validation), responses (OpenAI
shapes, SSE), loop (the engine thread), metrics (Prometheus text), server (uvicorn, graceful
shutdown), hogwild_ext / threads_ext (the `hogwild` and `threads` chat extensions), cli.
"""
