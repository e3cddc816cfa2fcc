"""Face words as a choice the U-Net must make: a contrastive loss on the faces' cells.

Read as a classifier (``toyworld.probe``: which expression's caption denoises a scene's
own latent best), the second-generation U-Net picks the right expression and facing at
chance — the plain loss gives the face words almost no gradient, since a face is a few
latent cells and the noisy latent tells the rest of the picture. This loss asks for that
choice directly (the diffusion classifier of Li et al. 2023, "Your Diffusion Model is
Secretly a Zero-Shot Classifier", used as a training signal): an image whose caption
names an expression (a facing) is denoised again, from the same noisy latent at the same
step, with the caption's expression words turned to each other expression (facing words
to each other facing); the squared error on the faces' latent cells, negated, is each
caption's logit (divided by a temperature: summed over a face's cells, the errors at high
noise differ by ~10 between captions), and the loss is the cross-entropy of the true
caption. The picture's own loss is unchanged; only the images with the highest noise
level in a batch take part (near t = 0 the latent already shows the face and every
caption denoises it alike).
"""

from __future__ import annotations

from toyworld import world as W

__all__ = ["FaceContrast"]


class FaceContrast:
    """The contrastive face loss of one training run (token ids fixed by the vocabulary)."""

    def __init__(self, device, temperature: float = 8.0):
        import torch

        from toyworld.model import token_vocab

        vocab = token_vocab()
        self.temperature = temperature
        self.sets = [
            torch.tensor([vocab[w + "</w>"] for w in words], device=device)
            for words in (W.EXPRESSIONS, W.FACINGS)
        ]

    def _has(self, ids):
        """[..., len(self.sets)] bool: which sets' words the captions ``ids`` [..., T] hold."""
        import torch

        return torch.stack([(ids[..., None] == s).any(-1).any(-1) for s in self.sets], -1)

    def pick_variants(self, caption_ids, var):
        """Each image's training caption ``var`` turned to one that names its expression
        and facing where one of its variants does (most face words first)."""
        score = self._has(caption_ids).sum(-1)  # [b, variants]
        best = score.argmax(1)
        full = score.gather(1, best[:, None]).squeeze(1) > 0
        return var.where(~full, best)

    def alternatives(self, ids):
        """(captions [n, A, T]: each ``ids`` row with one set's words turned by 1 .. K-1,
        every set in turn; which [n, A] bool: the row names that set's words at all)."""
        import torch

        rows, valid = [], []
        for words in self.sets:
            hit = ids[..., None] == words  # [n, T, K]
            is_word = hit.any(-1)
            index = hit.float().argmax(-1)
            for k in range(1, len(words)):
                rows.append(torch.where(is_word, words[(index + k) % len(words)], ids))
                valid.append(is_word.any(-1))
        return torch.stack(rows, 1), torch.stack(valid, 1)

    def loss(self, unet, text_encoder, noisy, ts, target, pred, ids, faces, autocast):
        """(cross-entropy, accuracy) over the rows that take part; ``pred`` is the U-Net's
        prediction with the true captions ``ids``, ``faces`` [n, 1, h, w] the face cells."""
        import torch
        import torch.nn.functional as F

        alt, valid = self.alternatives(ids)
        n, a = valid.shape
        if not bool(valid.any()):
            return None, None
        with autocast():
            enc = text_encoder(alt.flatten(0, 1))[0]
            p = unet(noisy.repeat_interleave(a, 0), ts.repeat_interleave(a), enc).sample
        true_err = ((pred.float() - target) ** 2 * faces).sum((1, 2, 3))  # [n]
        err = (p.float() - target.repeat_interleave(a, 0)) ** 2
        err = (err * faces.repeat_interleave(a, 0)).sum((1, 2, 3)).view(n, a)
        losses, hits = [], []
        start = 0
        for words in self.sets:
            k = len(words) - 1
            ok = valid[:, start]
            if bool(ok.any()):
                logits = torch.cat([true_err[:, None], err[:, start : start + k]], 1)[ok]
                logits = -logits / self.temperature
                zero = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
                losses.append(F.cross_entropy(logits, zero))
                hits.append((logits.argmax(1) == 0).float().mean())
            start += k
        return torch.stack(losses).mean(), torch.stack(hits).mean()
