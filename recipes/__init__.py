"""Recipes: the paper's pretraining runs and a tiny CPU run as JSON configs over one
`ml_collections.ConfigDict` (`recipes.config`), the pretraining CLI
(`python -m recipes.pretrain`) and the demo (`python -m recipes.demo`)."""

from recipes.config import apply_overrides
from recipes.config import default_config
from recipes.config import get_config
from recipes.config import list_configs
from recipes.config import load_config
from recipes.config import validate_config
