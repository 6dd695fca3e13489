"""The tracking server: pixel, click redirect, unsubscribe, preferences, sales profile, admin, health."""

from nurture.server.app import create_app

__all__ = ["create_app"]
