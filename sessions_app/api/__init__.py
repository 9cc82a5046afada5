"""REST API v1 under /api/v1/ (django-ninja); see endpoints.py."""

from sessions_app.api.endpoints import api

__all__ = ["api"]
