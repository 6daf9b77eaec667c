"""``python -m sparseforge.cli`` runs the command line."""

from .main import main

main()
