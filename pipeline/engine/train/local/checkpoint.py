"""Training checkpoints: trainable weights, optimizer, RNG states, step and data-order position.

``<checkpoint_dir>/step-00000500/`` holds ``trainable.safetensors`` (the parameters that train:
every weight, or only the LoRA adapters), ``optimizer.pt``, ``rng.pt`` and ``state.json``.
Each is written under a temporary name and renamed into place; only the newest is kept.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


@dataclass
class State:
    """Where a run is: steps done, the epoch's RNG state and the next batch in it, figures so far."""

    step: int = 0
    batch_index: int = 0
    epoch_rng: Any = None
    tokens: int = 0
    elapsed: float = 0.0
    history: list[tuple[int, float]] = field(default_factory=list)
    window: list[float] = field(default_factory=list)


def save(checkpoint_dir: Path, state: State, fingerprint: str, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer) -> float:
    """Write a checkpoint of ``state`` and drop older ones; returns the seconds it took."""
    started = time.monotonic()
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir / f"{PREFIX}{state.step:08d}"
    tmp = checkpoint_dir / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    trainable = {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if p.requires_grad}
    save_file(trainable, str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"epoch": state.epoch_rng, "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({
        "fingerprint": fingerprint, "step": state.step, "batch_index": state.batch_index, "tokens": state.tokens,
        "elapsed": state.elapsed, "history": state.history, "window": state.window}))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in checkpoint_dir.iterdir():
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return time.monotonic() - started


def latest(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``checkpoint_dir``, if any."""
    found = sorted(checkpoint_dir.glob(f"{PREFIX}*")) if checkpoint_dir.is_dir() else []
    return found[-1] if found else None


def load_latest(checkpoint_dir: Path, fingerprint: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                log: Callable[[str], None]) -> State | None:
    """Restore the newest checkpoint into ``model`` and ``optimizer`` and return its state; None
    (and the checkpoints removed) when there is none or it belongs to other data or settings."""
    path = latest(checkpoint_dir)
    if path is None:
        return None
    saved = json.loads((path / "state.json").read_text())
    if saved["fingerprint"] != fingerprint:
        log(f"ignoring checkpoint {path.name}: it was made with other data or settings")
        shutil.rmtree(checkpoint_dir)
        return None
    missing, unexpected = model.load_state_dict(load_file(path / "trainable.safetensors"), strict=False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if unexpected or trainable & set(missing):
        raise ValueError(f"checkpoint {path} does not fit the model: missing {sorted(trainable & set(missing))[:3]}, "
                         f"unexpected {unexpected[:3]}")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    rng = torch.load(path / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    version, internal, gauss = rng["epoch"]
    log(f"resuming from checkpoint {path.name} (step {saved['step']}, {saved['elapsed']:.0f}s trained)")
    return State(step=saved["step"], batch_index=saved["batch_index"], epoch_rng=(version, tuple(internal), gauss),
                 tokens=saved["tokens"], elapsed=saved["elapsed"],
                 history=[(s, loss) for s, loss in saved["history"]], window=saved["window"])
