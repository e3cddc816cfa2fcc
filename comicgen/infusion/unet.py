"""An infusion-trained U-Net: the weights that paint the panels with characters.

``comicgen.infusion.training`` fine-tunes a U-Net with the infusion in the loop, so that
it reads the characters' sheets; trained only on infused steps, it need not paint a panel
without characters as well as the model's own U-Net. ``[infusion] unet`` picks the U-Net
of the infused panels only:

- ``"auto"`` (default): the model's infusion U-Net when its folder ships one
  (``comicgen.json``: ``{"infusion_unet": "unet-infusion"}``), else its own;
- ``"own"``: always the model's own U-Net;
- a folder holding a U-Net (``config.json`` and weights, e.g. the trainer's ``OUT/unet``),
  relative to the workspace or absolute.

:class:`UnetSwap` loads the chosen weights *into* the pipeline's U-Net (and back), so
hooks, CPU offload and ``torch.compile`` stay as they are; the weights are read once.
Which folder the setting names: :func:`comicgen.models.resolve_infusion_unet`.
"""

from __future__ import annotations

from pathlib import Path

from comicgen.errors import ModelError


class UnetSwap:
    """Puts a U-Net folder's weights into ``pipe.unet`` in place, and the own ones back;
    keeps a reference-feature cache per U-Net (:attr:`cache`: the one in use)."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.current: Path | None = None  # None: the model's own weights are in
        self.caches: dict[Path | None, object] = {}  # per U-Net: its FeatureCache
        self._own: dict | None = None
        self._loaded: dict[Path, dict] = {}

    @property
    def cache(self):
        """The reference-feature cache of the U-Net in use (features depend on the
        weights), None until one is set."""
        return self.caches.get(self.current)

    @cache.setter
    def cache(self, cache) -> None:
        self.caches[self.current] = cache

    def use(self, folder: Path | None) -> None:
        if folder == self.current:
            return
        unet = self.pipe.unet
        if self._own is None:
            self._own = {k: v.detach().to("cpu", copy=True) for k, v in unet.state_dict().items()}
        state = self._own if folder is None else self._weights(folder)
        unet.load_state_dict(state)
        self.current = folder

    def _weights(self, folder: Path) -> dict:
        if folder not in self._loaded:
            from diffusers import UNet2DConditionModel

            try:
                other = UNet2DConditionModel.from_pretrained(str(folder))
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"cannot load the infusion U-Net '{folder}': {str(exc).splitlines()[0]}",
                    hint='check [infusion] unet (or set it to "own")',
                ) from None
            own = self.pipe.unet.state_dict()
            state = other.state_dict()
            if state.keys() != own.keys() or any(state[k].shape != own[k].shape for k in own):
                raise ModelError(
                    f"the infusion U-Net '{folder}' does not fit this model's U-Net",
                    hint="it must be fine-tuned from this model (same layers and sizes)",
                )
            self._loaded[folder] = state
        return self._loaded[folder]
