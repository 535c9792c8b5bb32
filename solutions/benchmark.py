"""Notebook 08 — inference benchmarking (Section 3.8).

Each stage is timed on its own (preprocess, encode, RSSM update, flow sampling) and end
to end, after warm-up runs; latencies are reported as mean / std / p50 / p95 / p99 in
milliseconds. GPU timings synchronise the device before reading the clock.

    python -m solutions.benchmark --profile quick        # the CPU quick model
    python -m solutions.benchmark --profile full         # the full-spec architecture
    python -m solutions.benchmark --checkpoint artifacts/vla_quick/last.pt   # trained weights
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from novapick.backbones import tokenize
from novapick.config import ModelConfig, get_profile
from novapick.policy.model import build_model, condition, encode, load_components, load_policy_model

# Published dense peak throughput used for the estimates (FP16/BF16 tensor cores, no
# sparsity): NVIDIA data sheets. Real models reach a fraction of peak: we assume 30 %.
GPU_PEAK_TFLOPS = {"T4 (Colab)": 65.0, "L4": 121.0, "A100": 312.0}
ASSUMED_UTILISATION = 0.30
LATENCY_TARGET_MS = 200.0


def _stats(samples_s: list[float]) -> dict:
    ms = np.array(samples_s) * 1000
    return {"mean": float(ms.mean()), "std": float(ms.std()), "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99))}


def _timed(fn, device: torch.device, warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):  # discard: lazy init, allocator warm-up, JIT effects
        fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def count_flops(fn) -> float:
    """FLOPs of one call (PyTorch's FLOP counter: matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def camera_preprocessing(size: int, device: torch.device):
    """A function that turns one fixed 640 x 480 camera frame (RGB uint8, depth in metres)
    into the encoder's input: centre square crop, resize to ``size``, scale to [0, 1]."""
    raw_rgb = torch.randint(0, 256, (480, 640, 3), dtype=torch.uint8)      # a camera frame (H, W, 3)
    raw_depth = torch.rand(480, 640) * 1.5

    def preprocess() -> tuple[torch.Tensor, torch.Tensor]:
        rgb = raw_rgb.to(device).permute(2, 0, 1)[None].float().div(255)
        rgb = F.interpolate(rgb[..., :, 80:560], size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)
        depth = F.interpolate((raw_depth.to(device) / 2.0).clamp(0, 1)[None, None, :, 80:560], size=(size, size),
                              mode="nearest")
        return rgb, depth
    return preprocess


@torch.no_grad()
def benchmark_inference(model: dict, device: torch.device,
                        num_warmup: int = 10, num_runs: int = 100, *,
                        mcfg: ModelConfig | None = None, flow_steps_curve: tuple[int, ...] = (1, 2, 5, 10, 20)
                        ) -> dict:
    """Per-stage latency of one inference step (observation -> first action chunk).

    Returns preprocess_ms, encode_ms, rssm_ms, flow_ms, total_ms (means), throughput_hz
    (chunks per second), meets_latency_target (total < 200 ms), plus per-stage
    mean/std/p50/p95/p99, parameters per component, peak memory, FLOPs per chunk, the
    flow-steps vs latency curve and L4 / T4 / A100 estimates.
    """
    mcfg = mcfg or ModelConfig()
    device = torch.device(device)
    for m in model.values():
        m.to(device).eval()
    S = mcfg.image_size
    preprocess = camera_preprocessing(S, device)
    tokens = tokenize("pick up the small red bottle on the left").to(device)
    state = torch.zeros(1, 16, device=device)
    rssm, head = model["rssm"], model["flow_head"]

    rgb, depth = preprocess()
    obs = encode(model, rgb, depth, tokens, state)
    h, z = rssm.initial_state(1, device)
    action = torch.zeros(1, mcfg.action_dim, device=device)
    h1, z1, _ = rssm.observe_step(obs, action, h, z)
    cond = condition(h1, z1, obs)

    stages = {
        "preprocess": _timed(preprocess, device, num_warmup, num_runs),
        "encode": _timed(lambda: encode(model, rgb, depth, tokens, state), device, num_warmup, num_runs),
        "rssm": _timed(lambda: rssm.observe_step(obs, action, h, z), device, num_warmup, num_runs),
        "flow": _timed(lambda: head.sample(cond, mcfg.flow_steps), device, num_warmup, num_runs),
    }

    def end_to_end():
        r, d = preprocess()
        o = encode(model, r, d, tokens, state)
        hh, zz, _ = rssm.observe_step(o, action, h, z)
        chunk = head.sample(condition(hh, zz, o), mcfg.flow_steps)
        scaler = model.get("action_scaler")      # the extensions' standardised actions
        return scaler.unnormalize(chunk) if scaler is not None else chunk

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stages["total"] = _timed(end_to_end, device, num_warmup, num_runs)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    flops = count_flops(end_to_end)
    curve = [{"flow_steps": n, "flow_ms_p50": _stats(_timed(lambda: head.sample(cond, n), device,
                                                             max(2, num_warmup // 5), max(10, num_runs // 5)))["p50"]}
             for n in flow_steps_curve]
    total = _stats(stages["total"])
    result = {f"{k}_ms": _stats(v)["mean"] for k, v in stages.items()}
    result.update({
        "throughput_hz": 1000.0 / total["mean"],
        "meets_latency_target": total["mean"] < LATENCY_TARGET_MS,
        "latency": {k: _stats(v) for k, v in stages.items()},
        "params": {k: int(sum(p.numel() for p in m.parameters())) for k, m in model.items()},
        "peak_memory_mb": float(peak_mb), "peak_memory_kind": "GPU allocated" if device.type == "cuda" else "process RSS",
        "gflops_per_chunk": flops / 1e9,
        "flow_steps_curve": curve,
        "gpu_estimates_ms": {gpu: flops / (peak * 1e12 * ASSUMED_UTILISATION) * 1000 for gpu, peak in GPU_PEAK_TFLOPS.items()},
        "gpu_estimate_assumptions": f"FLOPs / (published dense FP16 peak x {ASSUMED_UTILISATION:.0%}); ignores "
                                    "kernel launch overhead and memory bandwidth, so small models are optimistic",
        "device": str(device), "image_size": S, "runs": num_runs,
    })
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=["quick", "full"], default="quick")
    ap.add_argument("--checkpoint", help="benchmark trained weights (default: fresh weights, same architecture)")
    ap.add_argument("--components", default="solutions", help="module with the components (fresh weights)")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    if args.checkpoint:
        model, mcfg = load_policy_model(args.checkpoint)
    else:
        mcfg = get_profile(args.profile).model
        model = build_model(mcfg, load_components(args.components))
    result = benchmark_inference(model, torch.device(args.device), args.warmup, args.runs, mcfg=mcfg)
    lat = result["latency"]
    for stage in ("preprocess", "encode", "rssm", "flow", "total"):
        s = lat[stage]
        print(f"{stage:>10}: mean {s['mean']:8.2f}  std {s['std']:6.2f}  p50 {s['p50']:8.2f}  p95 {s['p95']:8.2f}  "
              f"p99 {s['p99']:8.2f} ms")
    print(json.dumps({k: v for k, v in result.items() if k != "latency"}))
    return result


if __name__ == "__main__":
    main()
