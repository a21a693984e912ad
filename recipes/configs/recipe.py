"""The `ml_collections` config file of the recipes: `get_config(<recipe>)`.

    python -m recipes.pretrain --config=recipes/configs/recipe.py:stop_tiny_procedural \
        --config.train.epochs=2

The argument after the colon is a built-in recipe name or a JSON recipe path (see
`recipes.config.get_config`); `--config=stop_tiny_procedural` is short for the above.
"""

from recipes import config as recipe_config


def get_config(recipe="stop_tiny_procedural"):
    return recipe_config.get_config(recipe)
