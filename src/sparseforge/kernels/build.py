"""Compile the native kernels ahead of time: ``python -m sparseforge.kernels.build``.

Prints where the library is cached and how long the build (or load) took; exit status 1 when it failed
(the package still works, with the stock-ops kernels).
"""

from __future__ import annotations

import sys

from . import native


def main(argv: list[str] | None = None) -> int:
    verbose = "-v" in (sys.argv[1:] if argv is None else argv)
    ok = native.load(verbose=verbose)
    info = native.info()
    if ok:
        print(f"sparseforge native kernels ready in {info['seconds']:.1f} s: {info['directory']}")
        return 0
    print(f"sparseforge native kernels unavailable ({info['error']}); the stock-ops kernels will be used",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
