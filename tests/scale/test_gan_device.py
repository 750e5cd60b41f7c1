"""The column GAN's device choice: ``auto`` picks CUDA when present; on the CPU nothing changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ecaug_feast.synth.gan import ConditionalGAN, GANConfig, resolve_device


def _df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=600), "b": rng.choice(["x", "y", "z"], 600), "c": rng.exponential(size=600)})


def _fit(device: str) -> pd.DataFrame:
    cfg = GANConfig(max_steps=40, eval_every=20, batch_size=200, calib_rows=2000, eval_rows=400, device=device)
    return ConditionalGAN(cfg).fit(_df(), ["b"]).sample(200, seed=1)


def test_auto_resolves_to_cuda_only_when_present(monkeypatch):
    assert GANConfig().device == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto means cuda here")
def test_auto_on_a_cpu_machine_equals_explicit_cpu():
    pd.testing.assert_frame_equal(_fit("auto"), _fit("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fit_on_cuda_samples_on_cpu():
    out = _fit("cuda")
    assert len(out) == 200 and set(out.columns) == {"a", "b", "c"}
