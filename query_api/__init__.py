"""The query side of the delivery read model: a GraphQL API over the projected tables.

It reads only; it never imports ``projector``. ``create_app(settings)`` in
``query_api.app`` builds the ASGI application, ``query-api`` (``query_api.cli``)
serves it.
"""
