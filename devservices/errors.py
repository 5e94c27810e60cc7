"""The one error of the services tool: a message for the user, exit status 1."""

from __future__ import annotations


class ServicesError(Exception):
    """A service could not be started, stopped or found; the message says why."""
