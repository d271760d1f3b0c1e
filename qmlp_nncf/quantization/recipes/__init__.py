"""Recipes: the ``Recipe`` and its knobs (``recipe``, ``knobs``), the ``auto:`` targets and the one resolution of
what a caller names (``recipe.resolve_recipe``, ``choice.RecipeChoice``), the catalog (``catalog``), NNCF's global
settings from a recipe (``nncf_settings``) and NNCF-style JSON configs (``config``).

Built on ``rules``; nothing here imports the algorithms or the entry points."""
