"""sparseforge."""
