"""The tenancy service: tenants, API clients, admin users, audit; the edge's security."""


def init_app(app, api) -> None:
    from hub.tenancy.api import bp, oauth_bp

    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "An access token from POST /oauth/token"})
    api.register_blueprint(oauth_bp)
    api.register_blueprint(bp)
