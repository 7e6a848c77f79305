from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Tuple

import numpy as np

__all__ = ["PromptMixin", "ClassPrompts"]


@dataclasses.dataclass(frozen=True, eq=False)
class ClassPrompts:
    """A zero-shot run's classes, their prompts prepared once for the run
    (:meth:`PromptMixin.prompts_for`) and handed to the model with each
    batch (``Call.prompts``), so that the model object itself is not changed.

    Attributes:
        classes: the class names, in the order of the model's outputs.
        embeddings: ``(C, D)`` float32 prompt embeddings (a zero-shot
            classifier's), or None.
        text: what the model's forward takes for these classes (tokenized or
            embedded text of a zero-shot detector or segmenter), or None.
    """

    classes: Tuple[str, ...]
    embeddings: Optional[np.ndarray] = None
    text: Any = None


class PromptMixin:
    """A model that can embed prompts (text, for zero-shot models), with
    FiftyOne's names: :attr:`can_embed_prompts`, :meth:`embed_prompt`,
    :meth:`embed_prompts`.

    Implement :meth:`embed_prompts` (a batch) or :meth:`embed_prompt`.

    A zero-shot model whose classes are its prompts also implements
    :meth:`prompts_for` and says so with :attr:`takes_classes`: then
    ``apply_model(..., classes=[...])`` prepares those classes' prompts once
    for the run and hands them to the model with each batch (the model's own
    classes are unchanged, so concurrent runs may use other classes).
    """

    @property
    def can_embed_prompts(self) -> bool:
        """Whether this model can embed prompts (some instances of a class may not)."""
        return True

    @property
    def takes_classes(self) -> bool:
        """Whether the classes of a run become this model's prompts for that
        run (:meth:`prompts_for`); False: ``classes=`` only filters its labels."""
        return False

    def prompts_for(self, classes: Sequence[str]) -> ClassPrompts:
        """The prompts of ``classes``, prepared (embedded or tokenized) once
        for a run; the model is not changed."""
        raise NotImplementedError(f"{type(self).__name__} takes no classes per run (takes_classes is False)")

    def embed_prompt(self, arg: Any) -> np.ndarray:
        """The embedding of one prompt, a 1-D float32 array."""
        if type(self).embed_prompts is PromptMixin.embed_prompts:
            raise NotImplementedError(f"{type(self).__name__} must implement embed_prompt() or embed_prompts()")
        return np.asarray(self.embed_prompts([arg])[0], dtype=np.float32)

    def embed_prompts(self, args: Sequence[Any]) -> np.ndarray:
        """The embeddings of prompts, a float32 array of shape ``(N, D)``."""
        if type(self).embed_prompt is PromptMixin.embed_prompt:
            raise NotImplementedError(f"{type(self).__name__} must implement embed_prompt() or embed_prompts()")
        return np.stack([np.asarray(self.embed_prompt(a), dtype=np.float32).reshape(-1) for a in args])
