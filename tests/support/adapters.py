"""Tiny LoRAs and textual-inversion embeddings for tests, made with peft and diffusers'
own savers (so they load as any LoRA or embedding file does)."""

from __future__ import annotations

from pathlib import Path


def save_tiny_lora(pipe, path: str | Path, seed: int = 0, rank: int = 4) -> Path:
    """A LoRA on the U-Net's attention projections with random (non-zero) weights,
    written with ``save_lora_weights``; ``pipe`` is left as it was."""
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        init_lora_weights=False,  # random A and B: the LoRA changes the picture
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe.unet.add_adapter(config, adapter_name="tiny")
    peft_state = get_peft_model_state_dict(pipe.unet, adapter_name="tiny")
    state = convert_state_dict_to_diffusers(peft_state)
    pipe.unet.delete_adapters("tiny")
    type(pipe).save_lora_weights(path.parent, unet_lora_layers=state, weight_name=path.name)
    return path


def save_tiny_embedding(pipe, path: str | Path, seed: int = 0, vectors: int = 1) -> Path:
    """A textual-inversion embedding (A1111's safetensors layout, ``emb_params``) for the
    pipeline's text encoder: random vectors at the scale of its token embeddings."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    table = pipe.text_encoder.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    params = torch.randn(vectors, table.shape[1], generator=generator) * table.std() * 4
    save_file({"emb_params": params.contiguous()}, str(path))
    return path
