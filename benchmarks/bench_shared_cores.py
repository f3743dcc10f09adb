"""Training and inference beside one competing CPU-bound process (issue 15 §2): the slowdown.

    .venv/bin/python benchmarks/bench_shared_cores.py [--rounds 2] [--wait-policy PASSIVE,ACTIVE]

Each measurement runs in a fresh subprocess (the OpenMP wait policy is read when torch starts) with
starlabel's defaults (threads = `starlabel.cores.usable_cores()`, OMP_WAIT_POLICY as given):

* train: `train.fit_epoch` of one paper-preset network over `--n-train` random spectra (batch 64,
  fresh noise as in the preset), seconds per epoch (best of 2 after a warm-up);
* infer: `Ensemble.predict_each` of `--members` paper-preset networks over `--n-infer` spectra
  (the default path, fused when there are several networks), spectra/s per model.

Every configuration is timed "quiet" and "beside a busy loop" (a `python -c 'while True: pass'`
subprocess, started before and killed after the timing), alternating, ROUNDS times; the slowdown is
the best loaded time over the best quiet time. With `--wait-policy unset` the worker imports torch
before starlabel, so OpenMP keeps its own default (workers spin a while before sleeping), as before
starlabel set PASSIVE. "Quiet" means without our busy loop: on a shared
machine other people's work is there in both, so the load (`uptime`) is printed with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def worker(kind: str, n_train: int, n_infer: int, members: int) -> dict:
    import torch  # before starlabel: with OMP_WAIT_POLICY unset, OpenMP keeps its own default (spin a while)

    from starlabel.cores import configure_threads, usable_cores
    from starlabel.grid import Grid
    from starlabel.model.config import preset
    from starlabel.model.network import Network
    from starlabel.model.run import NoiseAugment, fit_epoch

    threads = configure_threads()
    p = preset("paper")
    cfg = p.network
    gen = torch.Generator().manual_seed(0)
    if kind == "train":
        x = 1 + 0.02 * torch.randn(n_train, cfg.n_pixels, generator=gen)
        y = torch.randn(n_train, cfg.n_labels, generator=gen)
        torch.manual_seed(0)
        net = Network(cfg)
        opt = torch.optim.Adam(net.parameters(), lr=p.train.learning_rate, fused=True)
        noise = NoiseAugment(x.numpy(), list(Grid.default().slices().values()), p.train.noise_augment,
                             torch.device("cpu"))
        fit_epoch(net, opt, x[:256], y[:256], p.train.batch_size, gen, noise=noise)  # warm-up
        times = []
        for _ in range(2):
            t = time.perf_counter()
            fit_epoch(net, opt, x, y, p.train.batch_size, gen, noise=noise)
            times.append(time.perf_counter() - t)
        return {"seconds": min(times), "threads": threads, "usable_cores": usable_cores()}
    sys.path.insert(0, HERE)
    from bench_fused import make_ensemble

    ens = make_ensemble(members, "paper")
    x = (1 + 0.02 * torch.randn(n_infer, cfg.n_pixels, generator=gen)).numpy()
    ens.predict_each(x[:256])
    times = []
    for _ in range(2):
        t = time.perf_counter()
        ens.predict_each(x)
        times.append(time.perf_counter() - t)
    return {"seconds": min(times), "rate": n_infer * members / min(times), "threads": threads,  # per model
            "usable_cores": usable_cores(), "fused": bool(members > 1)}


def measure(kind, args, policy, busy: bool) -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY=policy)
    if policy == "unset":  # OpenMP's default, as before starlabel set PASSIVE
        del env["OMP_WAIT_POLICY"]
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        before = load()
        out = subprocess.run([sys.executable, __file__, "--worker", kind, "--n-train", str(args.n_train),
                              "--n-infer", str(args.n_infer), "--members", str(args.members)],
                             env=env, capture_output=True, text=True, check=True).stdout
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    res = json.loads(out.strip().splitlines()[-1])
    res["load"] = before
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=1024)
    ap.add_argument("--n-infer", type=int, default=2048)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--kinds", default="train,infer")
    ap.add_argument("--wait-policy", default="PASSIVE",
                    help="comma-separated OMP_WAIT_POLICY values to compare (PASSIVE, ACTIVE, unset)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n_train, args.n_infer, args.members)))
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load()}")
    for policy in args.wait_policy.split(","):
        for kind in args.kinds.split(","):
            quiet, busy = [], []
            for r in range(args.rounds):
                for is_busy, acc in ((False, quiet), (True, busy)):
                    res = measure(kind, args, policy, is_busy)
                    acc.append(res["seconds"])
                    what = (f"{res['seconds']:.2f} s/epoch over {args.n_train} spectra" if kind == "train" else
                            f"{res['rate']:.0f} spectra/s per model ({args.members} networks, {args.n_infer} spectra)")
                    print(f"OMP_WAIT_POLICY={policy:7s} {kind:5s} {'busy loop' if is_busy else 'quiet':9s} "
                          f"round {r + 1}: {what}; {res['threads']} threads; {res['load']}", flush=True)
            print(f"==> {kind} slowdown beside one busy loop (best/best), OMP_WAIT_POLICY={policy}: "
                  f"{min(busy) / min(quiet):.2f}x (target <= 2.5x)", flush=True)
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
