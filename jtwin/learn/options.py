"""``[train]`` options of a config: how ``jtwin train`` fits the plant's parameters (no jtwin imports,
so the config loader can use it)."""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("mle", "prediction")


@dataclass(frozen=True)
class TrainOptions:
    """The ``[train]`` table::

        [train]
        method = "mle"          # mle | prediction
        trainable = ""          # comma-separated parameter names; "" = the plant's identifiable defaults
        horizon = 10            # prediction method: steps ahead
        segment_length = 0      # samples per segment (0 = the whole log)
        batch_size = 0          # segments per step (0 = all: L-BFGS; else Adam)
        learning_rate = 0.01    # Adam step size (mini-batches)
        validation = 0.0        # fraction of the log (its end) held out
        max_epochs = 200
        patience = 10           # epochs without improvement before stopping
        confidence = 0.95       # level of the reported intervals
        seed = 0
    """

    method: str = "mle"
    trainable: str = ""
    horizon: int = 10
    segment_length: int = 0
    batch_size: int = 0
    learning_rate: float = 0.01
    validation: float = 0.0
    max_epochs: int = 200
    patience: int = 10
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self):
        checks = [
            ("method", self.method in METHODS, f"one of {list(METHODS)}"),
            ("horizon", self.horizon >= 1, "a positive integer"),
            ("segment_length", self.segment_length == 0 or self.segment_length >= 2, "0 (whole log) or an integer >= 2"),
            ("batch_size", self.batch_size >= 0, "0 (all segments) or a positive integer"),
            ("learning_rate", self.learning_rate > 0, "a positive number"),
            ("validation", 0.0 <= self.validation < 1.0, "a fraction in [0, 1)"),
            ("max_epochs", self.max_epochs >= 1, "a positive integer"),
            ("patience", self.patience >= 1, "a positive integer"),
            ("confidence", 0.0 < self.confidence < 1.0, "a level in (0, 1)"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"train.{name}: expected {expected}, got {getattr(self, name)!r}")

    @property
    def trainable_names(self) -> tuple[str, ...] | None:
        """The ``trainable`` names as a tuple (``None`` when empty: use the plant's defaults)."""
        names = tuple(s.strip() for s in self.trainable.split(",") if s.strip())
        return names or None
