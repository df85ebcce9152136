"""JSON Schemas of the server's requests and responses, and the OpenAPI document built from them.

``requests`` builds the request bodies from the parameter table, ``responses`` the response
shapes, ``openapi`` the document; the server validates bodies against that very document
(:mod:`abstractvision.server.validation`), so it always describes what the server accepts.
"""
