"""``python -m course.demo``: train a small MLP on the 8x8 digits with course, end to end.

Loads the shipped digits, splits them 70/15/15 (stratified, seeded), standardizes with the
training statistics, trains a 64-128-64-10 ReLU MLP with Adam, prints one row per epoch and
the test accuracy of the best epoch's weights, and saves the learning curves as a PNG
(``demo-out/digits-history.png`` by default; ``--out DIR`` to change).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from . import data, losses, nn, optim, plots, train


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the demo; returns the test loss and accuracy."""
    parser = argparse.ArgumentParser(prog="python -m course.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="folder for the PNG")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    X, y = data.load_digits()
    train_set, val_set, (X_test, y_test) = data.split(X, y, val=0.15, test=0.15, rng=args.seed, stratify=True)
    scaler = data.Standardizer().fit(train_set[0])
    train_set = (scaler.transform(train_set[0]), train_set[1])
    val_set = (scaler.transform(val_set[0]), val_set[1])
    X_test = scaler.transform(X_test)
    print(f"digits: {len(train_set[1])} train, {len(val_set[1])} validation, {len(y_test)} test samples")

    model = nn.MLP([64, 128, 64, 10], rng=args.seed)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)

    def show(history: train.History) -> None:
        if len(history) == 1:
            print(history.header())
        print(history.format_row(-1))

    history = train.fit(model, losses.cross_entropy, optimizer, train_set, val_set, epochs=args.epochs,
                        batch_size=32, early_stopping=train.EarlyStopping(patience=5), callback=show,
                        progress=False, rng=args.seed)
    test = train.evaluate(model, X_test, y_test, losses.cross_entropy)
    print(f"best epoch {history.best_epoch}: test loss {test['loss']:.4f}, "
          f"test accuracy {test['accuracy']:.2%}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "digits-history.png"
    plots.plot_history(history, title="MLP on the 8x8 digits").savefig(path, dpi=100)
    print(f"learning curves saved to {path}; total time {time.perf_counter() - t0:.1f} s")
    return test


if __name__ == "__main__":
    main()
