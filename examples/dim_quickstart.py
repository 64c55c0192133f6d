"""Deep InfoMax from Python: train on the offline `shapes` set, evaluate, embed images.

    python examples/dim_quickstart.py            # about a minute on two CPU cores
    python examples/dim_quickstart.py --dataset cifar10 --data-dir DATA --epochs 1

The same steps as ``dim train``, ``dim eval`` and ``dim.load_features``.
"""

from __future__ import annotations

import argparse

import torch

import dim
from dim.config import TrainConfig
from dim.core.datasets import load_dataset
from dim.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default=None, help="run directory (default runs/dim-DATASET-TIME)")
    args = parser.parse_args()

    result = train(TrainConfig(dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs, out=args.out))
    print(f"kNN top-1 on the test split: {result.metrics['knn_top1']:.3f}; run directory {result.run_dir}")

    # Embedding images in three lines: load, preprocess, forward.
    encoder = dim.load_features(result.run_dir)  # an nn.Module in eval mode, with its preprocessing
    images = load_dataset(args.dataset, "test", args.data_dir).images[:8]  # (8, C, H, W) uint8
    with torch.no_grad():
        codes = encoder(images.to(encoder.device))  # (8, 64): the code z of each image
    print("codes:", tuple(codes.shape), "cosine similarity of the first two:",
          torch.cosine_similarity(codes[0], codes[1], dim=0).item())


if __name__ == "__main__":
    main()
