"""JSON Schemas of the server's requests and responses, and the OpenAPI document built from them.

The request schemas are used twice: to validate incoming bodies and to publish
``/openapi.json``, so the document always describes what the server really accepts.
"""
