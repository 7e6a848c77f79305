"""Recipes moved to the core: :mod:`modelzoo.recipes` (this name stays for old imports)."""

from ..recipes import HOW_TO_PASS, Recipe, rebuild, recipe_of, remember

__all__ = ["Recipe", "recipe_of", "remember", "rebuild", "HOW_TO_PASS"]
