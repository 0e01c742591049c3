"""bfloat16 autocast against float32 training (``TrainConfig.precision``): does it change anything measurable?

First, one step: the gradient of a freshly initialised network on one batch of 128 real CIFAR-10 training images,
under bfloat16 autocast against float32 (relative error and cosine, per layer). Then whole runs: trains network
``--net`` of the preset's zoo once more under bfloat16 autocast, with the same init and data
seeds, in a zoo of its own (``<preset>-bf16``), and compares it with the float32 network of the same seeds and
with a second float32 network of other seeds (``--bis``), as the paper compares networks (eq. 6 on the preset's
probe images). Prints the test accuracies, the training times and, per layer, S(bf16, fp32) beside
S(fp32, fp32 of other seeds): bf16 changes nothing measurable when the first is no further from 1 than the second
and the accuracies differ by less than the two float32 seeds do.

    python benchmarks/bench_precision.py --preset paper              # on a GPU (CUDA autocast)
    python benchmarks/bench_precision.py --preset cpu --threads 2    # on this CPU (CPU autocast)
    python benchmarks/bench_precision.py --preset cpu --threads 2 --seeds 1001 1002   # and two more seed pairs

Every network is trained here, in zoos of their own (``<preset>-fp32``, ``<preset>-bf16``), whatever the preset's
own precision; a second invocation reuses them.
"""
import argparse
import dataclasses

import pandas as pd
import torch
import torch.nn.functional as F

from univenc import experiments as ex
from univenc.data import load_dataset
from univenc.similarity import compare_many
from univenc.storage import load_checkpoint
from univenc.training import resolve_device, to_float
from univenc.catalogue import ZOO_BY_NAME
from univenc.presets import get_preset
from univenc.zoo import build_model, checkpoint_path, load_net, train_zoo


def gradient_error(name, p, batch=128) -> pd.DataFrame:
    """Per layer: relative error and cosine of one batch's bfloat16-autocast gradient against float32's."""
    device = resolve_device()
    x, y = load_dataset("cifar10", train=True)
    x, y = to_float(x[:batch]).to(device), y[:batch].to(device)
    grads = []
    for bf16 in (False, True):
        net = build_model(ZOO_BY_NAME[name], p, num_classes=10).to(device).train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        grads.append({k: w.grad.float() for k, w in net.named_parameters() if w.grad is not None and w.ndim > 1})
    rows = [{"layer": k, "relative error": ((grads[1][k] - g).norm() / g.norm()).item(),
             "cosine": F.cosine_similarity(grads[1][k].flatten(), g.flatten(), dim=0).item()}
            for k, g in grads[0].items()]
    return pd.DataFrame(rows)


def trained(name, p):
    if not checkpoint_path(name, p).exists():
        train_zoo(p, only=[name])
    ckpt = load_checkpoint(checkpoint_path(name, p))
    log = ckpt["log"]
    return load_net(name, p), {"test_acc": log[-1]["test_acc"], "seconds": sum(r["seconds"] for r in log)}


def seed_spread(name, fp32, bf16, seeds) -> pd.DataFrame:
    """Test accuracy of ``name`` trained with other init and data seeds, in float32 and in bfloat16 (each pair with
    the same seeds): the seed-to-seed spread of float32, and bf16 - fp32 at each seed."""
    from univenc.zoo import _train_in_memory, train_config, zoo_dir

    rows = []
    for seed in seeds:
        spec = dataclasses.replace(ZOO_BY_NAME[name], name=f"{name}_seed{seed}", init_seed=seed)
        row = {"seed": seed}
        for key, p in (("fp32", fp32), ("bf16", bf16)):
            out = zoo_dir(p) / spec.name
            ckpt = load_checkpoint(out / "final.pt") if (out / "final.pt").exists() else \
                _train_in_memory(spec, p, train_config(spec, p), out, None, progress=False)
            row[key] = ckpt["log"][-1]["test_acc"]
        rows.append(row)
    return pd.DataFrame(rows).assign(diff=lambda t: t.bf16 - t.fp32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="auto")
    ap.add_argument("--net", default="fac_cifar10")
    ap.add_argument("--bis", default="fac_cifar10_bis", help="the same network with other init and data seeds")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[], help="more init/data seeds, each trained in both "
                    "precisions: the seed spread of the test accuracy")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = get_preset(args.preset)
    fp32 = dataclasses.replace(base, name=f"{base.name}-fp32", precision="fp32")
    bf16 = dataclasses.replace(base, name=f"{base.name}-bf16", precision="bf16")
    print(f"one step of {args.net} at init, bf16 autocast vs fp32 ({resolve_device()}):")
    print(gradient_error(args.net, fp32).to_string(index=False, float_format="{:.3f}".format))
    nets, rows = {}, []
    for key, (name, p) in {"bf16": (args.net, bf16), "fp32": (args.net, fp32), "fp32 bis": (args.bis, fp32)}.items():
        nets[key], info = trained(name, p)
        rows.append({"network": f"{name} ({key})", **info})
    print(pd.DataFrame(rows).to_string(index=False, float_format="{:.4f}".format))
    pairs = [("bf16", "fp32"), ("fp32 bis", "fp32")]
    out = compare_many(nets, pairs, ex.probe_batches(fp32), n_draws=fp32.n_draws, progress=False)
    table = pd.DataFrame({"layer": out[pairs[0]].table.layer_b,
                          "S(bf16, fp32)": out[pairs[0]].table.S.to_numpy(),
                          "S(fp32 bis, fp32)": out[pairs[1]].table.S.to_numpy(),
                          "S_spread": out[pairs[1]].table.S_spread.to_numpy()})
    print(table.to_string(index=False, float_format="{:.3f}".format))
    both = table.dropna(subset=table.columns[1:3])  # S is undefined where eq. 6's ceiling meets its floor
    print(f"over the {len(both)} layers where both S are defined: mean S bf16 vs fp32 (same seeds) "
          f"{both.iloc[:, 1].mean():.3f}, two fp32 seeds {both.iloc[:, 2].mean():.3f}; bf16 vs fp32 the higher in "
          f"{int((both.iloc[:, 1] >= both.iloc[:, 2]).sum())}")
    if args.seeds:
        seeds = seed_spread(args.net, fp32, bf16, args.seeds)
        print(seeds.to_string(index=False, float_format="{:.4f}".format))
        accs = pd.concat([seeds.fp32, pd.Series([r["test_acc"] for r in rows if "bf16" not in r["network"]])])
        print(f"fp32 test accuracy over {len(accs)} seeds: mean {accs.mean():.4f}, sd {accs.std():.4f}; "
              f"bf16 - fp32 at the same seeds: " + ", ".join(f"{d:+.4f}" for d in seeds["diff"]))


if __name__ == "__main__":
    main()
