"""Typed settings for the network and its training, with the `paper` and `quick` presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture (paper Fig. 5). `n_pixels` and `n_labels` are filled in from the data."""

    n_pixels: int = 8669
    n_labels: int = 5
    filters: tuple[int, ...] = (8, 16, 32)
    kernel: int = 5
    pool: int = 4
    dense: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.2
    negative_slope: float = 0.3  # LeakyReLU a (paper Sect. 3.1.3)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        d = dict(d)
        for k in ("filters", "dense"):
            d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and ensemble settings."""

    learning_rate: float = 1e-3  # Adam (Keras' default)
    batch_size: int = 64
    max_epochs: int = 300
    patience: int = 20  # epochs without a better test loss before stopping
    min_delta: float = 0.0
    test_fraction: float = 0.4  # paper Sect. 3.2.1: 8817 train / 5879 test
    eval_batch_size: int = 64  # test-set passes; small batches are fastest on CPU
    snapshot_epochs: tuple[int, ...] = (1, 10)  # + the last epoch (paper Fig. 6)
    # Learning rate × lr_factor after lr_patience epochs without a better test loss (None: constant).
    # Not in the paper; without it the test loss stalls on a noisy plateau and the networks underfit.
    lr_factor: float | None = 0.5
    lr_patience: int = 5
    min_lr: float = 1e-5
    # Weight each star's squared error in a label by 1/E² of its catalogue value (E_<LABEL>
    # column, normalised to mean 1 per label; labels without errors weigh 1). Not in the paper:
    # the training labels' noise varies ~3× with S/N, and the precise ones deserve more say.
    weight_by_errors: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Preset:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRESETS = {
    # Paper-faithful: Fig. 5 architecture, Adam, batch 64, 60/40 split, early stopping
    # (the paper's runs lasted 159 epochs on average). One addition the paper does not state:
    # the learning rate is halved on test-loss plateaus (lr_factor), which the mock survey needs.
    "paper": Preset(NetworkConfig(), TrainConfig()),
    # Small and fast, for the demo and the tests.
    "quick": Preset(
        NetworkConfig(filters=(4, 8, 16), dense=(64, 32, 16), dropout=0.1),
        TrainConfig(learning_rate=2e-3, max_epochs=60, patience=8),
    ),
}


def preset(name: str, **train_overrides) -> Preset:
    """The named preset, with any TrainConfig field overridden (e.g. max_epochs=5)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[name]
    return replace(p, train=replace(p.train, **train_overrides)) if train_overrides else p
