"""A placeholder that raises when used (see the package docstring)."""


def missing(name: str):
    def fail(*args, **kwargs):
        raise RuntimeError(f"torchvision.{name} is not installed in .venv-peers (import-only stub)")
    fail.__name__ = name
    return fail
