"""``python -m attnkit.bench``: the engines side by side, time and peak memory.

Every number about speed or memory in the book comes from here (never from a
timed test). Each configuration runs in its own child process, so that one
engine's memory high-water mark or thread pool cannot leak into another's.

CPU (``--device cpu``, the default without a GPU): one thread
(``torch.set_num_threads(1)``, ``OMP/MKL/OPENBLAS_NUM_THREADS=1``), ``d = 64``,
float32, ``q, k, v`` of shape ``(1, 1, n, d)``; engines ``numpy`` (the naive
reference, forms the n x n matrix), ``torch`` (naive, eager), ``sdpa`` (PyTorch's
fused kernel), ``flash-numpy`` and ``flash-torch`` (attnkit's tiled engine on
NumPy and on torch input). Measured per call:

* time: the best (minimum) and the median of ``--repeats`` calls after one
  warm-up call, and over ``--rounds`` interleaved rounds the minimum of the
  best times; ratios are best time over SDPA's best time at the same ``n``;
* peak memory: the growth of the child's resident set during one call (Linux:
  reset the high-water mark through ``/proc/self/clear_refs``, read ``VmHWM``
  afterwards; the inputs already exist), and for NumPy engines also the peak of
  ``tracemalloc`` (NumPy reports its buffers to it).

GPU (``--device cuda``): bf16, ``batch * n = 16384`` tokens, ``heads = 2048 / d``,
``d`` in 64 and 128, ``n`` from 512 to 16384, causal and not; the Triton engine
against ``scaled_dot_product_attention`` restricted to its FlashAttention backend,
forward and forward+backward, timed with ``triton.testing.do_bench`` (median,
CUDA events). FLOPs per forward: ``4 * batch * heads * n * n * d`` (half of
that with a causal mask); forward+backward counts 3.5 times the forward (the
backward as 2.5 forwards, FlashAttention's convention). The card's bf16 matrix
product rate is measured in the same run (an 8192^3 product) as the peak.

Results go to ``benchmarks/results-{cpu,gpu}.json`` (with the machine, the library
versions and the command) and a human-readable ``.md`` beside each.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CPU_ENGINES = ("numpy", "torch", "sdpa", "flash-numpy", "flash-torch")
CPU_SIZES = (512, 1024, 2048, 4096, 8192)
GPU_SIZES = (512, 1024, 2048, 4096, 8192, 16384)
GPU_DIMS = (64, 128)
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
MiB = 1024 * 1024


# ------------------------------------------------------------------------ machine info


def machine_info(device: str) -> dict[str, Any]:
    """The machine and library versions, for the results file."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in ("numpy", "torch", "triton"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    from . import __version__

    versions["attnkit"] = __version__
    info["versions"] = versions
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(props.total_memory / 1024**3, 1)
        info["gpu_multiprocessors"] = props.multi_processor_count
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ------------------------------------------------------------------------ CPU child


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_rss_growth(fn: Any) -> int | None:
    """Bytes by which the resident set's high-water mark rose during ``fn()`` (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
    except OSError:
        return None
    before = _rss_kib("VmRSS")
    fn()
    peak = _rss_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, peak - before) * 1024


def _cpu_call(engine: str, n: int, d: int) -> Any:
    """A zero-argument function that runs ``engine`` once on seeded ``(1, 1, n, d)`` inputs."""
    import numpy as np

    rng = np.random.default_rng(n)
    q, k, v = (rng.standard_normal((1, 1, n, d)).astype(np.float32) for _ in range(3))
    from .core import attention

    if engine in ("numpy", "flash-numpy"):
        backend = "numpy" if engine == "numpy" else "flash"
        return lambda: attention(q, k, v, backend=backend)
    import torch

    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    backend = {"torch": "torch", "sdpa": "sdpa", "flash-torch": "flash"}[engine]

    def call() -> Any:
        with torch.no_grad():
            return attention(tq, tk, tv, backend=backend)

    return call


def cpu_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Measure one CPU configuration (runs in a child process)."""
    import numpy as np

    if cfg["engine"] != "numpy" and cfg["engine"] != "flash-numpy":
        import torch

        torch.set_num_threads(1)
    engine, n, d, repeats = cfg["engine"], cfg["n"], cfg["d"], cfg["repeats"]
    _cpu_call(engine, 64, d)()  # load libraries and lazy buffers outside the measurement
    call = _cpu_call(engine, n, d)
    row: dict[str, Any] = {"engine": engine, "n": n, "d": d}
    row["peak_rss_growth_bytes"] = _peak_rss_growth(call)
    if engine in ("numpy", "flash-numpy"):
        import tracemalloc

        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        call()
        row["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    row["time_best_s"] = min(times)
    row["time_median_s"] = float(np.median(times))
    return row


# ------------------------------------------------------------------------ GPU child


def gpu_child(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Measure the Triton kernels and SDPA's FlashAttention at one ``(d, causal)``, all ``n``."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .engines.triton_flash import flash_attention_triton, tuned_configs

    d, causal, tokens = cfg["d"], cfg["causal"], cfg["tokens"]
    heads = 2048 // d
    rows = []
    for n in cfg["sizes"]:
        batch = max(1, tokens // n)
        gen = torch.Generator(device="cuda").manual_seed(n + d)
        q, k, v = (torch.randn(batch, heads, n, d, device="cuda", generator=gen,
                               dtype=torch.bfloat16) for _ in range(3))
        d_out = torch.randn_like(q)
        flops = 4 * batch * heads * n * n * d * (0.5 if causal else 1.0)

        def sdpa(q: Any, k: Any, v: Any) -> Any:
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        def triton_fa(q: Any, k: Any, v: Any) -> Any:
            return flash_attention_triton(q, k, v, causal=causal)

        ref = sdpa(q, k, v)
        for name, fn in (("sdpa-flash", sdpa), ("triton", triton_fa)):
            row: dict[str, Any] = {"engine": name, "d": d, "n": n, "causal": causal,
                                   "batch": batch, "heads": heads}
            try:
                row.update(_gpu_measure(fn, (q, k, v), d_out, flops, ref))
                if name == "triton":
                    row["configs"] = tuned_configs()
            except Exception as exc:  # noqa: BLE001 - report, and keep measuring the rest
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
        del q, k, v, d_out, ref
        torch.cuda.empty_cache()
    return rows


def _gpu_measure(fn: Any, qkv: tuple, d_out: Any, flops: float, ref: Any) -> dict[str, Any]:
    """Forward and forward+backward time, TFLOP/s and peak extra memory of ``fn(q, k, v)``."""
    import torch
    from triton.testing import do_bench

    row: dict[str, Any] = {}
    out = fn(*qkv)
    row["max_abs_diff_vs_sdpa"] = float((out.float() - ref.float()).abs().max())
    del out
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(*qkv)
    torch.cuda.synchronize()
    row["fwd_peak_extra_bytes"] = torch.cuda.max_memory_allocated() - base
    ms = do_bench(lambda: fn(*qkv), warmup=25, rep=100, return_mode="median")
    row["fwd_ms"] = ms
    row["fwd_tflops"] = flops / ms / 1e9
    leaves = [x.detach().requires_grad_(True) for x in qkv]

    def fwd_bwd() -> None:
        for x in leaves:
            x.grad = None
        fn(*leaves).backward(d_out)

    ms = do_bench(fwd_bwd, warmup=25, rep=100, return_mode="median")
    row["fwdbwd_ms"] = ms
    row["fwdbwd_tflops"] = 3.5 * flops / ms / 1e9
    return row


def matmul_peak() -> dict[str, Any]:
    """The measured bf16 matrix-product rate of the current GPU (8192^3, median)."""
    import torch
    from triton.testing import do_bench

    n = 8192
    gen = torch.Generator(device="cuda").manual_seed(0)
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
            for _ in range(2))
    ms = do_bench(lambda: a @ b, warmup=50, rep=300, return_mode="median")
    return {"n": n, "dtype": "bfloat16", "ms": ms, "tflops": 2 * n**3 / ms / 1e9}


# ------------------------------------------------------------------------ parent


def _spawn(payload: dict[str, Any], threads_one: bool,
           extra_env: dict[str, str] | None = None) -> Any:
    env = {**os.environ, **(extra_env or {})}
    if threads_one:
        env.update(THREAD_ENV)
    proc = subprocess.run(
        [sys.executable, "-m", "attnkit.bench", "--child", json.dumps(payload)],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-600:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    """All CPU configurations, ``args.rounds`` interleaved rounds; returns the results."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for r in range(args.rounds):
        for n in args.sizes:
            for engine in args.engines:
                cfg = {"mode": "cpu", "engine": engine, "n": n, "d": args.d,
                       "repeats": args.repeats}
                row = _spawn(cfg, threads_one=True)
                if "error" in row:
                    row = {"engine": engine, "n": n, "d": args.d, **row}
                old = best.get((engine, n))
                if old is None or "error" in old:
                    best[(engine, n)] = row
                elif "error" not in row:
                    old["time_best_s"] = min(old["time_best_s"], row["time_best_s"])
                    old.setdefault("round_medians_s", [old["time_median_s"]]).append(
                        row["time_median_s"])
                    for key in ("peak_rss_growth_bytes", "tracemalloc_peak_bytes"):
                        if row.get(key) is not None and old.get(key) is not None:
                            old[key] = max(old[key], row[key])
                print(f"round {r + 1}/{args.rounds}  n={n:5d}  {engine:12s} "
                      + (f"{row['time_best_s'] * 1e3:9.2f} ms" if "time_best_s" in row
                         else row.get("error", "")[-200:]), flush=True)
    rows = list(best.values())
    by = {(r["engine"], r["n"]): r for r in rows}
    for r in rows:
        s = by.get(("sdpa", r["n"]))
        if s and "time_best_s" in r and "time_best_s" in s:
            r["time_ratio_vs_sdpa"] = r["time_best_s"] / s["time_best_s"]
        naive = by.get(("numpy", r["n"]))
        if (naive and r.get("peak_rss_growth_bytes") is not None
                and naive.get("peak_rss_growth_bytes")):
            r["memory_ratio_vs_naive"] = r["peak_rss_growth_bytes"] / naive["peak_rss_growth_bytes"]
    return {
        "kind": "cpu",
        "settings": {
            "d": args.d, "dtype": "float32", "shape": "(1, 1, n, d)", "threads": 1,
            "repeats": args.repeats, "rounds": args.rounds, "sizes": list(args.sizes),
            "time": "best of the repeats, minimum over rounds; ratio = engine / sdpa",
            "memory": "growth of the child's resident-set high-water mark during one call "
                      "(VmHWM after clear_refs); tracemalloc peak for NumPy engines",
            "flash_blocks": _flash_blocks(),
        },
        "rows": sorted(rows, key=lambda r: (r["n"], CPU_ENGINES.index(r["engine"]))),
    }


def _flash_blocks() -> dict[str, int]:
    from .engines import flash

    return {"block_q": flash.BLOCK_Q, "block_k": flash.BLOCK_K}


def run_gpu(args: argparse.Namespace) -> dict[str, Any]:
    """All GPU configurations, one child per (head dim, causal)."""
    rows: list[dict[str, Any]] = []
    for d in args.dims:
        for causal in (False, True):
            cfg = {"mode": "gpu", "d": d, "causal": causal, "sizes": list(args.sizes),
                   "tokens": args.tokens}
            got = _spawn(cfg, threads_one=False, extra_env={"ATTNKIT_TRITON_AUTOTUNE": "1"})
            if isinstance(got, dict):
                print(f"d={d} causal={causal}: {got.get('error')}", flush=True)
                continue
            rows += got
            for r in got:
                print(f"d={d:3d} causal={causal!s:5} n={r['n']:5d} {r['engine']:10s} "
                      f"fwd {r.get('fwd_tflops', float('nan')):6.1f} TFLOP/s  "
                      f"fwd+bwd {r.get('fwdbwd_tflops', float('nan')):6.1f} TFLOP/s"
                      + (f"  {r['error']}" if "error" in r else ""), flush=True)
    peak = _spawn({"mode": "matmul"}, threads_one=False)
    by = {(r["engine"], r["d"], r["n"], r["causal"]): r for r in rows}
    for r in rows:
        s = by.get(("sdpa-flash", r["d"], r["n"], r["causal"]))
        for key in ("fwd", "fwdbwd"):
            if s and f"{key}_tflops" in r and f"{key}_tflops" in s:
                r[f"{key}_speedup_vs_sdpa"] = r[f"{key}_tflops"] / s[f"{key}_tflops"]
            if f"{key}_tflops" in r and "tflops" in peak:
                r[f"{key}_fraction_of_matmul_peak"] = r[f"{key}_tflops"] / peak["tflops"]
    return {
        "kind": "gpu",
        "settings": {
            "dtype": "bfloat16", "tokens_per_batch": args.tokens, "heads": "2048 / d",
            "dims": list(args.dims), "sizes": list(args.sizes),
            "flops": "forward 4*B*H*n*n*d (x0.5 causal); forward+backward 3.5x forward",
            "timing": "triton.testing.do_bench, median of CUDA-event timings",
            "sdpa": "F.scaled_dot_product_attention under sdpa_kernel(FLASH_ATTENTION)",
            "triton_blocks": "autotuned per problem size (ATTNKIT_TRITON_AUTOTUNE=1) over "
                             "attnkit.engines.triton_flash.AUTOTUNE_CONFIGS; the chosen "
                             "shapes are in each row's 'configs'",
        },
        "matmul_peak": peak,
        "rows": rows,
    }


def write_results(result: dict[str, Any], out_dir: Path, command: str) -> tuple[Path, Path]:
    """Write ``results-<kind>.json`` and ``results-<kind>.md``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = result["kind"]
    result = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine_info("cuda" if kind == "gpu" else "cpu"),
        **result,
    }
    jpath = out_dir / f"results-{kind}.json"
    jpath.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    mpath = out_dir / f"results-{kind}.md"
    mpath.write_text(markdown(result))
    return jpath, mpath


def _fmt(x: Any, spec: str) -> str:
    return "" if x is None else format(x, spec)


def markdown(result: dict[str, Any]) -> str:
    """A human-readable table of a results dictionary."""
    m = result["machine"]
    lines = [f"# Benchmark results ({result['kind'].upper()})", "",
             f"- date: {result['date']}", f"- command: `{result['command']}`",
             f"- machine: {m.get('gpu', m['cpu'])}; {m['logical_cpus']} logical CPUs; "
             f"{m['platform']}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), ""]
    lines += [f"- {k}: {v}" for k, v in result["settings"].items()] + [""]
    if result["kind"] == "cpu":
        lines += ["| n | engine | best ms | median ms | x SDPA time | peak RSS growth MiB "
                  "| tracemalloc MiB | x naive memory |", "|---|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            if "error" in r:
                lines.append(f"| {r['n']} | {r['engine']} | error: {r['error'][-80:]} |")
                continue
            rss = r.get("peak_rss_growth_bytes")
            tm = r.get("tracemalloc_peak_bytes")
            lines.append(
                f"| {r['n']} | {r['engine']} | {r['time_best_s'] * 1e3:.1f} | "
                f"{r['time_median_s'] * 1e3:.1f} | {_fmt(r.get('time_ratio_vs_sdpa'), '.2f')} | "
                f"{_fmt(None if rss is None else rss / MiB, '.1f')} | "
                f"{_fmt(None if tm is None else tm / MiB, '.1f')} | "
                f"{_fmt(r.get('memory_ratio_vs_naive'), '.4f')} |")
    else:
        p = result["matmul_peak"]
        lines += [f"Measured bf16 matmul peak: {_fmt(p.get('tflops'), '.0f')} TFLOP/s "
                  f"({p.get('n')}^3 product).", "",
                  "| d | causal | n | engine | fwd ms | fwd TFLOP/s | fwd x SDPA | fwd % peak "
                  "| fwd+bwd ms | fwd+bwd TFLOP/s | fwd+bwd x SDPA |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(result["rows"], key=lambda r: (r["d"], r["causal"], r["n"], r["engine"])):
            if "error" in r:
                lines.append(f"| {r['d']} | {r['causal']} | {r['n']} | {r['engine']} | "
                             f"error: {r['error'][-80:]} |")
                continue
            frac = r.get("fwd_fraction_of_matmul_peak")
            lines.append(
                f"| {r['d']} | {r['causal']} | {r['n']} | {r['engine']} | "
                f"{r['fwd_ms']:.3f} | {r['fwd_tflops']:.0f} | "
                f"{_fmt(r.get('fwd_speedup_vs_sdpa'), '.2f')} | "
                f"{_fmt(None if frac is None else 100 * frac, '.0f')} | "
                f"{r['fwdbwd_ms']:.3f} | {r['fwdbwd_tflops']:.0f} | "
                f"{_fmt(r.get('fwdbwd_speedup_vs_sdpa'), '.2f')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m attnkit.bench`` / ``attnkit bench``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="attnkit bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="cpu: one-thread engine comparison; cuda: Triton vs SDPA TFLOP/s")
    parser.add_argument("--sizes", type=int, nargs="+", help="sequence lengths n")
    parser.add_argument("--engines", nargs="+", choices=CPU_ENGINES, default=list(CPU_ENGINES),
                        help="CPU engines to compare (sdpa is the time baseline)")
    parser.add_argument("--d", type=int, default=64, help="CPU head width (default 64)")
    parser.add_argument("--dims", type=int, nargs="+", default=list(GPU_DIMS),
                        help="GPU head widths (default 64 128)")
    parser.add_argument("--tokens", type=int, default=16384, help="GPU: batch * n")
    parser.add_argument("--repeats", type=int, default=5, help="CPU: timed calls per child")
    parser.add_argument("--rounds", type=int, default=1, help="CPU: interleaved rounds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"),
                        help="folder for results-*.json and results-*.md (default benchmarks/)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        cfg = json.loads(args.child)
        if cfg["mode"] == "cpu":
            result: Any = cpu_child(cfg)
        elif cfg["mode"] == "gpu":
            result = gpu_child(cfg)
        else:
            result = matmul_peak()
        print(json.dumps(result))
        return 0

    device = args.device
    if device == "auto":
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "cpu"
    given = list(argv if argv is not None else sys.argv[1:])
    if "--out" in given:  # where the files go does not change the results
        i = given.index("--out")
        del given[i:i + 2]
    command = "python -m attnkit.bench " + " ".join(given)
    if device == "cpu":
        if "sdpa" not in args.engines:
            parser.error("--engines must include sdpa, the time baseline")
        args.sizes = args.sizes or list(CPU_SIZES)
        result = run_cpu(args)
    else:
        args.sizes = args.sizes or list(GPU_SIZES)
        result = run_gpu(args)
    jpath, mpath = write_results(result, args.out, command.strip())
    print(mpath.read_text())
    print(f"wrote {jpath} and {mpath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
