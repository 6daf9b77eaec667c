"""``python -m sparseforge ...`` is the ``sparseforge`` command (as torchrun launches it: ``-m sparseforge``)."""

from .cli.main import main

if __name__ == "__main__":
    main()
