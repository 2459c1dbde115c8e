"""How this compiled core was built, for ``mbusgw --version``.

The answer comes from the C compiler, not from a setting read at run time: the release build
defines ``CYTHON_WITHOUT_ASSERTIONS`` (setup.py), the debug build (``MBUSGW_DEBUG=1``) does not.
"""

cdef extern from *:
    """
    #ifdef CYTHON_WITHOUT_ASSERTIONS
    #define MBUSGW_CORE_DEBUG 0
    #else
    #define MBUSGW_CORE_DEBUG 1
    #endif
    """
    const int MBUSGW_CORE_DEBUG

DEBUG = bool(MBUSGW_CORE_DEBUG)


def describe():
    """``"release build"`` or ``"debug build (bounds checks, assertions)"``."""
    return "debug build (bounds checks, assertions)" if DEBUG else "release build"
