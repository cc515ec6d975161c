"""Serving: the JSON API (`http_api.py`, its request reading in `requests.py`), MCP (`mcp_tools.py`),
image URLs (`image_urls.py`), middleware, the server assembly (`server.py`), telemetry, and model
replicas on Ray (`cluster.py`). Handed scorers and a page; imports no torch and no page code.
"""
