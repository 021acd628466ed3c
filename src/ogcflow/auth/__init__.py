"""Who is asking: credentials (OpenID Connect bearer tokens, API keys, the admin token) turned into a
:class:`ogcflow.domain.Caller`, and whether authentication is required at all (docs/security.md)."""
