"""InfoGAN from Python: train on MNIST, score the categorical code, draw traversals, extract features.

    python examples/infogan_mnist.py --data-dir DATA --iterations 200

The same steps as ``infogan train``, ``infogan eval`` and ``infogan sample``.
"""

from __future__ import annotations

import argparse

import torch

from infogan import TrainConfig, load_features, save_traversal
from infogan.evaluate import evaluate
from infogan.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="dataset root (default $DIM_DATA_DIR, else ./data)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--out", default=None, help="run directory (default runs/infogan-mnist-TIME)")
    args = parser.parse_args()

    config = TrainConfig(dataset="mnist", data_dir=args.data_dir, iterations=args.iterations, out=args.out)
    run_dir = train(config).run_dir
    result = evaluate(run_dir)
    print(f"c1 accuracy after {result['iterations']} iterations: {100 * result['cat_accuracy']:.2f}%")
    for code in ("c1", "c2", "c3"):
        print("wrote", save_traversal(run_dir, run_dir / f"vary_{code}.png", vary=code, value_range=2.0))

    extractor = load_features(run_dir)  # D's trunk, the interface dim-search loads
    size = extractor.image_size
    images = torch.randint(0, 256, (4, extractor.channels, size, size), dtype=torch.uint8)
    print("features:", tuple(extractor(images).shape))


if __name__ == "__main__":
    main()
