"""Every reason the query API refuses a request, one concept per module.

In the order a request meets them:

- ``auth``: a bearer token, by header or in a WebSocket's ``connection_init``;
- ``body``: the size of an HTTP body;
- ``shape``: what a request's JSON and text may hold before parsing (nesting,
  valid Unicode, the subscribe payload of a WebSocket);
- ``rules``: the token limit and the validation rules (depth, aliases, introspection);
- ``pages``: the bounds of `first` and of a fold;
- ``cost`` (the pure estimate) and ``budget`` (the estimate enforced, before any SQL);
- ``lanes``: where an operation runs, chosen by its estimated cost;
- ``nodes``: results charged with the real number of parents, as statements run.

The database's own bounds (admission queue, statement timeout) are
``query_api.database``'s: they bound time, not what a request asks for.
"""
