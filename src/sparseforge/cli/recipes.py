"""``sparseforge recipes``: every packaged recipe, by the one name each command accepts."""

from __future__ import annotations

import typer

from .console import out, rich_table


def register(app: typer.Typer) -> None:
    """Add the ``recipes`` command to ``app``."""

    @app.command("recipes")
    def recipes() -> None:
        """List the packaged recipes: the command, the name to give it, and the file."""
        from ..config import RECIPE_PREFIXES, RECIPES, recipe_names

        usage = {"study": "sparseforge study {}", "prune": "sparseforge prune --config {}",
                 "ssl": "sparseforge ssl --recipe {}", "search": "sparseforge search run {}",
                 "hw fixed": "sparseforge hw fixed --config {}"}
        rows = []
        for command, prefix in RECIPE_PREFIXES.items():
            for name in recipe_names(prefix):
                rows.append({"command": command, "name": name, "run it with": usage[command].format(name),
                             "file": f"recipes/{prefix}{name.replace('-', '_')}.yaml"})
        from ..nn.conv_recipes import CONV_RECIPES
        from ..studies.transformer import SETTINGS

        # recipes defined in code (no YAML file): seed 001's conv nets and the Transformer study's settings
        rows += [{"command": "conv2", "name": name, "run it with": f"sparseforge conv2 --recipe {name}",
                  "file": "(built in: nn/conv_recipes.py)"} for name in CONV_RECIPES]
        rows += [{"command": "study", "name": "transformer", "run it with":
                  f"sparseforge study transformer --setting {s}", "file": "(built in: studies/transformer.py)"}
                 for s in SETTINGS]
        out.print(rich_table(rows, title=f"packaged recipes ({RECIPES})"))
        out.print("a recipe name may also be written with _ or with the command prefix (prune_tiny = tiny); "
                  "any YAML file path works as well")
