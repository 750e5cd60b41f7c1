"""Fault suite, output a person can read (issue 12 item 9): known library noise is muted by
category and module only (real warnings still show), and ``ingest``/``augment`` print plain
progress lines when stderr is not a terminal."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
import warnings

import pytest

from _ecaug_cli import REPO, run_subprocess

NOISE = ("Successfully loaded", "DeprecationWarning", "FutureWarning", "faiss.loader", "is_fx_tracing",
         "HeuristicalStorageReservation", "TopologyFactory", "[TBE=", "caching params will be ignored")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO, timeout=300)


def test_known_noise_is_muted_even_after_feast_resets_the_filters():
    # feast's modules call warnings.simplefilter("once", DeprecationWarning) at import
    proc = _python("""
        import warnings
        from ecaug_feast.noise import quiet_known_noise
        quiet_known_noise()
        import feast.feature_view  # puts a catch-all "once" DeprecationWarning filter in front
        warnings.warn_explicit("fetch_arrow_table() is deprecated", DeprecationWarning,
                               "/x/site-packages/ibis/backends/duckdb/__init__.py", 332, module="ibis.backends.duckdb")
        warnings.warn_explicit("Failed to import: lookup_adam_ssd", DeprecationWarning,
                               "/x/site-packages/fbgemm_gpu/split_embedding_codegen_lookup_invokers/__init__.py", 172,
                               module="fbgemm_gpu.split_embedding_codegen_lookup_invokers")
        warnings.warn_explicit("a real problem", UserWarning, "/x/site-packages/ibis/backends/duckdb/__init__.py", 1,
                               module="ibis.backends.duckdb")
        warnings.warn_explicit("deprecated here", DeprecationWarning, "/x/site-packages/otherlib/core.py", 1, module="otherlib.core")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "fetch_arrow_table" not in proc.stderr and "lookup_adam_ssd" not in proc.stderr
    assert "a real problem" in proc.stderr  # same module, other category: kept
    assert "deprecated here" in proc.stderr  # other module: kept (feast's "once" shows it)


def test_recommender_quiet_no_longer_ignores_every_warning():
    # old code: recommender.cli._quiet() (now ecaug_feast.cli.train_cmds) ran warnings.filterwarnings("ignore") for everything
    from ecaug_feast.cli.train_cmds import _quiet

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        _quiet()
        warnings.warn("a real warning from our code", UserWarning)
    assert any("a real warning" in str(w.message) for w in seen)


def test_fbgemm_root_logger_info_is_dropped_but_others_stay():
    proc = _python("""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
        from ecaug_feast.noise import quiet_known_noise
        quiet_known_noise()
        rec = logging.LogRecord("root", logging.INFO, "/x/site-packages/fbgemm_gpu/__init__.py", 1,
                                "Successfully loaded: 'fbgemm_gpu_py.so'", None, None)
        logging.getLogger().handle(rec)
        logging.getLogger("faiss.loader").info("Loading faiss with AVX512 support.")
        logging.info("our own info line")
        logging.getLogger("faiss.loader").warning("faiss has a real problem")
    """)
    assert "Successfully loaded" not in proc.stderr and "AVX512" not in proc.stderr
    assert "our own info line" in proc.stderr and "faiss has a real problem" in proc.stderr


def test_torchrec_caching_params_warning_is_dropped_but_its_other_warnings_stay():
    # seen on every sequence-model build (one line per data-parallel table) in the demo and benchmarks
    proc = _python("""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
        from ecaug_feast.noise import quiet_known_noise
        quiet_known_noise()
        quiet_known_noise()  # idempotent: one filter
        log = logging.getLogger("torchrec.distributed.utils")
        assert len(log.filters) == 1
        log.warning("Sharding Type is data_parallel, caching params will be ignored")
        log.warning("Compute Kernel is dense, caching params will be ignored")
        log.warning("torchrec has a real problem")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "caching params" not in proc.stderr
    assert "torchrec has a real problem" in proc.stderr


def test_plain_progress_lines():
    from ecaug_feast.cli.progress import PlainProgress

    out = io.StringIO()
    t = iter(range(100))
    p = PlainProgress("ingest: user features", stream=out, step=25, clock=lambda: float(next(t)))
    for done in range(0, 101, 5):
        p(done, 100)
    lines = out.getvalue().splitlines()
    assert [re.search(r"(\d+)%", ln).group(1) for ln in lines] == ["0", "25", "50", "75", "100"]
    assert all(re.fullmatch(r"ingest: user features \d+% \(\d+\.\d s\)", ln) for ln in lines)


@pytest.mark.slow
def test_ingest_train_augment_output_without_a_terminal(tmp_path):
    """Real processes, stderr a pipe (as in CI): progress lines, and none of the known noise."""
    env = {"ECAUG_HOME": str(tmp_path / "home")}
    res = run_subprocess(["ingest", "--dataset", "beauty", "--max-users", "2000"], env=env)
    assert res.code == 0, res.err[-3000:]
    progress = [ln for ln in res.err.splitlines() if re.match(r"ingest: user features for beauty: \d+% \(", ln)]
    assert len(progress) >= 2 and progress[-1].startswith("ingest: user features for beauty: 100%"), res.err[-2000:]

    res = run_subprocess(["train", "--dataset", "beauty", "--source", "memory", "--epochs", "1", "--batch-size", "256",
                          "--dim", "8", "--name", "noise-check"], env=env)
    assert res.code == 0, res.err[-3000:]
    noisy = [ln for ln in res.err.splitlines() if any(n in ln for n in NOISE)]
    assert not noisy, "\n".join(noisy[:20])

    try:  # augment: GAN progress as plain lines (apply starts an embedded Redis in this home)
        assert run_subprocess(["apply"], env=env).code == 0
        res = run_subprocess(["augment", "--generator", "column", "--rows", "200", "--steps", "200", "--no-publish"], env=env)
    finally:
        run_subprocess(["redis", "stop"], env=env)
    assert res.code in (0, 1) and not res.traceback, res.err[-3000:]  # 1: the run failed its gate
    gan = [ln for ln in res.err.splitlines() if re.match(r"augment: GAN \d+% fidelity [\d.]+ \(", ln)]
    assert len(gan) >= 2, res.err[-2000:]
    noisy = [ln for ln in res.err.splitlines() if any(n in ln for n in NOISE)]
    assert not noisy, "\n".join(noisy[:20])
