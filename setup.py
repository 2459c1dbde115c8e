"""Build the compiled core: every core/*.pyx becomes the extension mbusgw.core.<name>.

MBUSGW_DEBUG=1 builds with bounds checks, wraparound checks and line tracing, for the
property tests that hunt for overruns the release build would not notice.
"""

import importlib.util
import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("MBUSGW_DEBUG") == "1"

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:
    directives["linetrace"] = True
    macros.append(("CYTHON_TRACE_NOGIL", "1"))
else:
    # `assert` in the .pyx files checks invariants of the debug build only
    macros.append(("CYTHON_WITHOUT_ASSERTIONS", None))

# The three code folders install as mbusgw.core, mbusgw.gateway and mbusgw.web (with subpackages).
TOP_LEVEL = ("core", "gateway", "web")
# Folders of data files are packages of their own to setuptools (it warns about each one that
# holds package data without being listed), so they are named here with the files they carry.
PACKAGE_DATA = {
    "mbusgw.core": ["*.pxd", "*.pyi", "compact_layouts.json"],
    "mbusgw.gateway.deploy": ["*.service", "*.toml"],
    "mbusgw.gateway.services.snmp": ["*.txt"],
    "mbusgw.gateway.simulator.frames": ["*"],
    "mbusgw.web.static": ["*"],
    "mbusgw.web.templates": ["*"],
}
packages = sorted(
    {
        "mbusgw." + str(init.parent).replace("/", ".")
        for top in TOP_LEVEL
        for init in Path(top).rglob("__init__.py")
    }
    | set(PACKAGE_DATA)
)


def refresh_vif_table() -> None:
    """Rewrite core/_vif_table.h if core/vif_table.csv now gives another header.

    The header is committed, so a fresh clone builds without generating anything; comparing
    content rather than file times (which a clone sets arbitrarily) keeps it that way. A source
    distribution carries the header without the generator.
    """
    generator = Path("tools/gen_vif_table.py")
    if not generator.is_file():
        return
    spec = importlib.util.spec_from_file_location("gen_vif_table", generator)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([])


refresh_vif_table()


def cimport_root() -> str:
    """A folder where the core's .pxd files have their installed names (mbusgw/core/...), so
    that a compiled module cimports another by the name it is imported by at run time."""
    root = Path("build/cimport")
    package = root / "mbusgw"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.pxd").touch()
    core = package / "core"
    if not core.is_symlink():
        core.symlink_to(Path("../../../core"))
    return str(root)


extensions = [
    Extension(
        f"mbusgw.core.{pyx.stem}",
        [str(pyx)],
        include_dirs=["core", numpy.get_include()],
        define_macros=macros,
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O2"],
    )
    for pyx in sorted(Path("core").glob("*.pyx"))
]
# Compiled gateway modules (I/O is allowed there, never in the core): the bus's native loop.
extensions += [
    Extension(
        f"mbusgw.gateway.{pyx.stem}",
        [str(pyx)],
        define_macros=macros,
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O2"],
    )
    for pyx in sorted(Path("gateway").glob("*.pyx"))
]

setup(
    packages=packages,
    package_dir={f"mbusgw.{top}": top for top in TOP_LEVEL},
    package_data=PACKAGE_DATA,
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        include_path=["core", cimport_root()],
        build_dir="build/debug/cython" if DEBUG else None,
    ),
    # a separate build tree, so a debug build never picks up release objects (or vice versa)
    options={"build": {"build_base": "build/debug"}} if DEBUG else {},
    zip_safe=False,
    include_package_data=False,  # MANIFEST.in feeds the sdist; the wheel takes PACKAGE_DATA alone
)
