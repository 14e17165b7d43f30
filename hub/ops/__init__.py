"""Operations: health, readiness, metrics."""


def init_app(app, api) -> None:
    from hub.ops.api import bp

    api.register_blueprint(bp)
