"""One training run of ``toyworld.train``: its arguments, checkpoint state (save, resume,
extend), device and models (built from config, or initialised from a saved pipeline)."""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np

from toyworld import model as M
from toyworld.trainkit import Log


# --- the run: state, models, checkpoints -----------------------------------------------
class Run:
    """One training run: its arguments, checkpoint state, device and models."""

    def __init__(self, args: argparse.Namespace):
        import torch

        self.args, self.t_start = args, time.time()
        self.out = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_path = self.out / "checkpoint.pt"
        self.log = Log(self.out / "log.jsonl")
        if args.threads:
            torch.set_num_threads(args.threads)
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        self.bf16 = args.precision == "bf16" or (args.precision == "auto" and self.cuda)
        self.state = self._load_state()
        self.deadline = self._deadline()
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        self._build_models()

    def autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def elapsed(self) -> float:
        return self.state["elapsed"] + (time.time() - self.t_start)

    def _load_state(self) -> dict:
        import torch

        args = self.args
        if self.ckpt_path.exists() and not args.fresh:
            state = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
            print(
                f"resuming from {self.ckpt_path}: phase {state['phase']}, "
                f"step {state.get('step', 0)}, {state['elapsed'] / 60:.1f} min used",
                flush=True,
            )
            return state
        return {
            "phase": "vae",
            "step": 0,
            "elapsed": 0.0,
            "seed": args.seed,
            "args": vars(args) | {"out": str(self.out), "export": str(args.export)},
        }

    def _deadline(self) -> float:
        args, state = self.args, self.state
        deadline = self.t_start + args.budget_minutes * 60 - state["elapsed"]
        extending = state.get("phase") == "unet" and bool(state.get("extensions"))
        if extending and args.extend_minutes <= 0:
            # an interrupted extension: finish its own budget (the run's total is spent)
            left = state["unet_budget"] - state.get("unet_elapsed", 0.0)
            print(f"resuming the U-Net extension: {left / 60:.1f} min left", flush=True)
            # the extension's own budget bounds the U-Net loop's time (not the setup's)
            return float("inf")
        if args.extend_minutes > 0:
            if state.get("phase") != "done":
                what = "extension" if extending else "checkpoint"
                raise SystemExit(
                    f"--extend-minutes: the {what} is not finished; "
                    "run the same command without --extend-minutes to resume it first"
                )
            state["phase"], state["optim"] = "unet", None
            state["unet_budget"] = args.extend_minutes * 60
            state["unet_elapsed"] = 0.0
            state.setdefault("extensions", []).append(
                {
                    "from_step": state.get("step", 0),
                    "minutes": args.extend_minutes,
                    "lr": args.lr,
                    "data": args.data,
                    "hat_weight": args.hat_weight,
                    "face_weight": args.face_weight,
                    "buckets": args.buckets,
                }
            )
            print(
                f"extending the U-Net phase by {args.extend_minutes} min from step {state['step']}",
                flush=True,
            )
            return self.t_start + (args.extend_minutes + args.reserve_minutes) * 60
        return deadline

    def _build_models(self) -> None:
        state = self.state
        self.vae = M.build_vae().to(self.device)
        self.text_encoder = M.build_text_encoder().to(self.device)
        self.unet = M.build_unet().to(self.device)
        if self.args.init is not None and "models" not in state and state["phase"] == "vae":
            self._init_from(self.args.init)
        print(
            f"model: vae {M.count_parameters(self.vae) / 1e6:.2f}M, "
            f"text encoder {M.count_parameters(self.text_encoder) / 1e6:.2f}M, "
            f"unet {M.count_parameters(self.unet) / 1e6:.2f}M parameters; "
            f"device {self.device}, bf16 autocast {self.bf16}",
            flush=True,
        )
        models = state.get("models", {})
        if "vae" in models:
            self.vae.load_state_dict(models["vae"])
        if "unet" in models:
            self.text_encoder.load_state_dict(models["text_encoder"])
            self.unet.load_state_dict(models["unet"])

    def _init_from(self, folder: Path) -> None:
        """Weights from a saved pipeline; the token embedding grows to today's vocabulary
        (the first rows - the old tokens, whose ids never change - kept)."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel

        folder = Path(folder)
        vae = AutoencoderKL.from_pretrained(folder / "vae").float()
        text = CLIPTextModel.from_pretrained(folder / "text_encoder").float()
        unet = UNet2DConditionModel.from_pretrained(folder / "unet").float()
        old_rows = text.get_input_embeddings().weight.shape[0]
        new_rows = self.text_encoder.get_input_embeddings().weight.shape[0]
        if new_rows != old_rows:
            text.resize_token_embeddings(new_rows)
        self.vae.load_state_dict(vae.state_dict())
        self.text_encoder.load_state_dict(text.state_dict())
        self.unet.load_state_dict(unet.state_dict())
        state = self.state
        state["scaling_factor"] = float(vae.config.scaling_factor)
        state["init"] = {"from": str(folder), "token_rows": [old_rows, new_rows]}
        if self.args.separate_words:
            from toyworld.trainkit import separate_words

            words, factor = self.args.separate_words, self.args.separate_by
            apart = separate_words(self.text_encoder, words, factor)
            state["init"]["separated"] = [*words, factor]
            print(
                f"init: {' and '.join(words)} moved apart, x{1 + factor:g} ({apart:.3f})",
                flush=True,
            )
        state["vae_steps_done"] = 0
        state["phase"], state["step"] = "unet", 0
        state["models"] = {
            "vae": self.vae.state_dict(),
            "unet": self.unet.state_dict(),
            "text_encoder": self.text_encoder.state_dict(),
        }
        print(f"init: weights from {folder} (token rows {old_rows} -> {new_rows})", flush=True)

    def save(self, extra_models: dict | None = None, optim=None) -> None:
        import torch

        state = self.state
        models = {"vae": self.vae.state_dict()} | (extra_models or {})
        if "unet" not in models and "unet" in state.get("models", {}):
            models |= {k: state["models"][k] for k in ("unet", "text_encoder")}
        state["models"] = {
            k: {n: t.detach().cpu() for n, t in m.items()} for k, m in models.items()
        }
        state["optim"] = optim.state_dict() if optim is not None else None
        state["rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if self.cuda else None,
            "np": np.random.get_state(),
            "py": random.getstate(),
        }
        state["elapsed_at_save"] = self.elapsed()
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(state | {"elapsed": self.elapsed()}, tmp)
        os.replace(tmp, self.ckpt_path)

    def restore_rng(self) -> None:
        import torch

        rng = self.state.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            if self.cuda and rng["cuda"] is not None:
                torch.cuda.set_rng_state_all(rng["cuda"])
            np.random.set_state(rng["np"])
            random.setstate(rng["py"])

    def time_left(self) -> float:
        return self.deadline - time.time() - self.args.reserve_minutes * 60
