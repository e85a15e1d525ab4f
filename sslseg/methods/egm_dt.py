"""Hsu & Hua: BCP (sslseg.methods.bcp) with an edge-guided network, a shrinking copy-paste box and two teachers, as
in their ``ACDC_labelnum{3,7}_train.py`` (docs/methods.md, "Hsu & Hua"). Everything not listed is BCP's.

* Network: the edge-guided UNet (``egm_unet``: Sobel edge map, edge-guided attention with CBAM after every decoder
  stage); on LA the edge-guided VNet (``egm_vnet``, sslseg.models.egm), set by the benchmark.
* Dynamic box: in each stage the box side shrinks linearly from ``box`` (2/3) to ``box_end`` of each axis,
  s(t) = box - (t / T)(box - box_end), t the iteration within the stage and T its length (1/3 on ACDC, 1/2 on LA,
  5/9 on Pancreas).
* Dynamic teacher D: EMA of the student (parameters and float buffers) every self-training iteration, decay
  ``ema_decay``; by default the paper's per budget, 0.89 for 3 labelled ACDC patients and 0.95 for 7, else
  BCP's 0.99 (LA, Pancreas).
* Static teacher S: a copy of the student whenever a counter of iterations reaches a period; the period starts at
  ``static_period`` of the self-training stage (1000 of 30k) and, at every validation, grows by ``static_step``
  (500) on a new best student, up to ``static_max`` (2000), and shrinks by it otherwise, down to ``static_min``
  (500).
* Pseudo-labels: argmax of the mean of S's and D's logits (both in train mode, as BCP's teacher), reduced to the
  largest connected component per class. Both teachers start self-training as copies of the best pre-trained
  student.
"""

from __future__ import annotations

import dataclasses

from sslseg.methods import METHODS, Network, Stage
from sslseg.methods.bcp import BCP
from sslseg.methods.common import make_ema

EMA_BY_BUDGET = {3: 0.89, 7: 0.95}  # ACDC labelled patients -> dynamic-teacher decay (the paper's scripts)


def next_period(period: int, improved: bool, step: int, low: int, high: int) -> int:
    """The static teacher's copy period after a validation: +step on a new best (at most high), else -step (at
    least low)."""
    return min(period + step, high) if improved else max(period - step, low)


@METHODS.register("egm_dt")
class EdgeGuidedDualTeacher(BCP):
    @dataclasses.dataclass(frozen=True)
    class Params(BCP.Params):
        box_end: float = 1 / 3
        ema_decay: float | None = None  # None: EMA_BY_BUDGET, else 0.99
        static_period: float = 1000 / 30000  # fractions of the self-training stage
        static_step: float = 500 / 30000
        static_min: float = 500 / 30000
        static_max: float = 2000 / 30000

        RANGES = {**BCP.Params.RANGES, "box_end": (0, 1), "static_step": (0, 1)}

        def __post_init__(self):
            super().__post_init__()
            if not 0 < self.box_end <= self.box:
                raise ValueError("box_end must be in (0, box]")
            if not 0 < self.static_min <= self.static_period <= self.static_max:
                raise ValueError("static periods need 0 < static_min <= static_period <= static_max")

    networks = {"student": Network(model={"name": "egm_unet"})}

    def setup(self) -> None:
        super().setup()
        self.static = make_ema(self.student)
        self.decay = self.p.ema_decay if self.p.ema_decay is not None else EMA_BY_BUDGET.get(self.budget, 0.99)
        self.counter, self.period = 0, self._iters(self.p.static_period)

    def modules(self):
        return {**super().modules(), "static": self.static}

    def _span(self, name: str) -> tuple[int, int]:
        """(first iteration, length) of stage ``name``."""
        stages = sorted(self.stages(), key=lambda s: s.start)
        ends = [s.start for s in stages[1:]] + [self.iterations]
        start, end = next((s.start, e) for s, e in zip(stages, ends) if s.name == name)
        return start, end - start

    def _iters(self, fraction: float) -> int:
        """A fraction of the self-training stage in iterations (at least 1)."""
        return max(1, int(round(fraction * self._span("self-train")[1])))

    def box_fraction(self, step: int) -> float:
        start, length = self._span(self.stage)
        return self.p.box - (step - start) / length * (self.p.box - self.p.box_end)

    def begin_stage(self, stage: Stage) -> None:
        super().begin_stage(stage)  # the dynamic teacher (BCP's teacher) copies the student
        if stage.name == "self-train":
            self.static.load_state_dict(self.student.state_dict())
            self.counter, self.period = 0, self._iters(self.p.static_period)

    def pseudo_labels(self, ua, ub):
        self.teacher.train()
        self.static.train()
        logits_a = (self.static(ua) + self.teacher(ua)) / 2
        logits_b = (self.static(ub) + self.teacher(ub)) / 2
        return logits_a.argmax(1), logits_b.argmax(1)

    def end_iteration(self, step: int, validation) -> None:
        if self.stage != "self-train":
            return
        if validation is not None:
            self.period = next_period(self.period, validation[1], self._iters(self.p.static_step),
                                      self._iters(self.p.static_min), self._iters(self.p.static_max))
        self.counter += 1
        if self.counter >= self.period:
            self.static.load_state_dict(self.student.state_dict())
            self.counter = 0

    def state(self) -> dict:
        return {"counter": self.counter, "period": self.period}

    def load_state(self, state: dict) -> None:
        self.counter, self.period = state.get("counter", 0), state.get("period", self.period)
