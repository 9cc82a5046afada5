"""gunicorn settings read by every `gunicorn` started from the repository root (the Procfile's).

uvicorn rewrites the client address and scheme from X-Forwarded-For/-Proto only for peers in
`forwarded_allow_ips`; it follows TRUSTED_PROXIES, so those headers from anyone else are
ignored (gunicorn's own default would trust loopback).
"""

from fimlsessions.env import env_networks

# A comma-separated string, as gunicorn validates it; empty trusts no peer.
forwarded_allow_ips = ",".join(env_networks("TRUSTED_PROXIES", []))
