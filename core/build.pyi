"""Type stub of core/build.pyx."""

DEBUG: bool

def describe() -> str: ...
