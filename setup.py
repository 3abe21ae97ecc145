"""The listening matcher's hot path (normalising, finding keys, evaluating queries) is C against the
CPython API: gcc and Python's headers are all it needs. Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "hubbub.lib._match",
            sources=["hubbub/lib/_match.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
        )
    ]
)
