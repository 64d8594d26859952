"""`nl2code serve`: the model behind an HTTP/JSON API (Starlette on uvicorn, extra `serve`).

    app.py      endpoints, limits, token, errors      worker.py  queue, deadlines, metrics
    run.py      sockets, uvicorn, background / stop   openapi.py the OpenAPI document

Importing this package imports neither torch nor the web stack; run.serve() does.
"""
