"""SSCD (AAAI 2026) as in its ``code/train_ACDC_SSCD.py`` and ``utils/displacement.py`` (docs/methods.md, "SSCD").

One run, stages by the trainer's stage mechanism: ``pretrain`` then ``S1`` ... ``S5``.

* Pre-training (``pretrain`` of the iterations; 10k of 10k + 5 x 80k): the student on BCP's labelled mix
  X = a M + b (1 - M), loss [Dice + CE]/2 of ``mix_loss`` with both weights 1; after ``entropy_start`` of the stage
  (6000 of 10000) also on X' = X E, Y' = Y E, E = the ``entropy_top`` (20 %) highest-entropy pixels of the
  prediction on X: CE over the image + Dice restricted to E.
* Self-training stages S_k: both students and the teacher start from the previous stage's best student (S2: the
  best *second* student of S1), with fresh optimisers. The first student sees the weak view, the second the
  strong view (colour jitter 0.8/0.8/0.8/0.2 of a cutout image, the cutout labelled background); the teacher
  (train mode) labels each view's unlabelled halves: the pseudo-variance gate, then the largest component. Per
  student i, on its view's BCP mixes (one box M for both views):
      L_i = [Dice_i + CE_i]/2                       BCP mix loss, weight ``u_weight`` on pseudo-labels
          + Dice(p_i, argmax p_j)                   cross-view, j the other student
          + Dice(p_i(D), argmax p_j(D))             D = CGSR displacement of both views' mixes (``displace``)
          + Dice_disk(p_i(D), argmax p_j(D))        stages 1..``disk_stages``, inside a central disk
  L = L_1 + L_2, each student stepped by its own SGD optimiser.
* Teacher: EMA of the students' parameters, the first student after odd and the second after even iterations
  t of the stage (counted from 1; decay min(1 - 1/(t + 1), ``ema_decay``)), as the reference's update calls intend; the reference's teacher is
  frozen because its parameters are frozen before the update (``frozen_teacher: true`` gives that).
* HCA weights W_k ([1/2, 1/4, 1/8, full] heads, ``stage_weights``): R = sum_s W_k[s] up(head_s), the
  multi-scale output that ranks patches in CGSR; as in the reference R enters no loss.
* Pseudo-variance gate: PV = (n sum_c p_c^2 - 1)/(n - 1) (the reference's (n-1)/n sum_c (p_c - (1-p_c)/(n-1))^2);
  the second class where PV > ``pv_threshold`` and p_2 > ``top2_threshold``, else the first. At 0.8 / 0.3 it never
  fires (p_2 > 0.3 bounds PV by sum p^2 <= 0.7^2 + 0.3^2 = 0.58).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from sslseg import SslsegError
from sslseg.augment import bcp_box_mask, colour_jitter, cutmix_boxes
from sslseg.methods import METHODS, Method, Network, Stage, make_optimiser
from sslseg.methods.bcp import halves, largest_cc, mix_loss, region_dice
from sslseg.methods.common import dice_loss, ema_update, make_ema

HEADS = ("down2", "down4", "down8")  # the deep-supervision heads W weighs, before the full-resolution output
STAGE_WEIGHTS = ((1.0, 0.0, 0.0, 0.0), (0.5, 0.5, 0.0, 0.0), (0.0, 0.5, 0.5, 0.0), (0.0, 0.0, 0.5, 0.5),
                 (0.0, 0.0, 0.0, 1.0))


def pseudo_variance_gate(logits: torch.Tensor, pv_threshold: float, top2_threshold: float) -> torch.Tensor:
    """SSCD ``pseudo_variance_gate``: per pixel the second most probable class where PV > ``pv_threshold`` and its
    probability > ``top2_threshold``, else the most probable; (B, C, ...) -> (B, ...)."""
    p = logits.softmax(1)
    n = p.shape[1]
    pv = (n * (p * p).sum(1) - 1) / (n - 1)
    top, idx = p.topk(2, dim=1)
    return torch.where((pv > pv_threshold) & (top[:, 1] > top2_threshold), idx[:, 1], idx[:, 0])


def entropy_mask(probs: torch.Tensor, top: float) -> torch.Tensor:
    """SSCD ``generate_masks``: 1 where a pixel's entropy is at least the (HW - k)-th smallest of its image,
    k = int(top * HW) (the k + 1 most uncertain pixels, more on ties); (B, C, H, W) -> (B, H, W)."""
    ent = -(probs * probs.clamp_min(1e-8).log()).sum(1)
    flat = ent.flatten(1)
    k = int(top * flat.shape[1])
    thr = flat.kthvalue(flat.shape[1] - k, dim=1).values
    return (ent >= thr.view(-1, *(1,) * (ent.ndim - 1))).float()


def neighbour_difference(conf: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of each cell of a (B, G, G) grid to its 4-neighbours (those inside the grid)."""
    diffs = torch.zeros_like(conf)
    count = torch.zeros_like(conf)
    for dim in (1, 2):
        d = (conf.narrow(dim, 1, conf.shape[dim] - 1) - conf.narrow(dim, 0, conf.shape[dim] - 1)).abs()
        for lo in (0, 1):  # each difference belongs to both cells
            sl = [slice(None)] * 3
            sl[dim] = slice(lo, lo + conf.shape[dim] - 1)
            diffs[tuple(sl)] += d
            count[tuple(sl)] += 1
    return diffs / count


def patch_disk(size: int) -> torch.Tensor:
    """The reference's circular patch mask: (y - r)^2 + (x - r)^2 <= r^2 on a size x size grid, r = size // 2."""
    r = size // 2
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (((x - r) ** 2 + (y - r) ** 2) <= r * r).float()


def central_disk(h: int, w: int, radius: int) -> torch.Tensor:
    """The stage 1-3 region: pixels (i, j) with (i - h/2)^2 + (j - w/2)^2 <= radius^2 inside the 2r x 2r square
    starting at the centre minus r (the reference's crop)."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dy, dx = y - h // 2, x - w // 2
    inside = (dy >= -radius) & (dy < radius) & (dx >= -radius) & (dx < radius)
    return inside & (dx * dx + dy * dy <= radius * radius)


def displace(x1: torch.Tensor, x2: torch.Tensor, conf1: torch.Tensor, conf2: torch.Tensor, r1: torch.Tensor,
             r2: torch.Tensor, grid: int, top_k: int, kl_branch: torch.Tensor, reference: bool = False) -> torch.Tensor:
    """CGSR patch displacement (``hhh``) between two views of the same images: x1, x2 (B, C, H, W), their
    max-softmax maps conf (B, H, W) and multi-scale logits R (B, K, H, W). On a ``grid`` x ``grid`` patch grid,
    diff = neighbour difference of the patch mean confidence. Per image where ``kl_branch`` (B,) is true: view 2's
    hardest patch (largest diff) is pasted, inside a disk, into the one of view 1's ``top_k`` easiest patches whose
    mean R (softmax over classes) has the smallest KL(view 2's hardest || it), and the mirror; elsewhere view 2's
    hardest patch goes into view 1's easiest and the mirror (``reference``: indexed with the whole batch's
    argmax/argmin vectors, as the reference code does). Returns the 2B displaced images, view 1's first."""
    b, ch, h, w = x1.shape
    ph, pw = h // grid, w // grid
    if ph * grid != h or pw * grid != w or ph != pw:
        raise SslsegError(f"sscd: the patch ({h} x {w}) must split into a {grid} x {grid} grid of square patches")

    def cells(t):  # (B, [C,] H, W) -> (B, [C,] G*G, ph*pw)
        t = t.unflatten(-2, (grid, ph)).unflatten(-1, (grid, pw)).transpose(-3, -2)
        return t.flatten(-4, -3).flatten(-2, -1)

    p1, p2 = cells(x1).transpose(1, 2).clone(), cells(x2).transpose(1, 2).clone()  # (B, G*G, C, ph*pw)
    d1 = neighbour_difference(cells(conf1).mean(-1).view(b, grid, grid)).flatten(1)
    d2 = neighbour_difference(cells(conf2).mean(-1).view(b, grid, grid)).flatten(1)
    m1, m2 = cells(r1).mean(-1).transpose(1, 2), cells(r2).mean(-1).transpose(1, 2)  # (B, G*G, K)
    easy1, easy2 = d1.topk(top_k, dim=1, largest=False).indices, d2.topk(top_k, dim=1, largest=False).indices
    disk = patch_disk(ph).flatten().to(x1)
    hard1, hard2 = d1.argmax(1), d2.argmax(1)

    def kl(target, cands):  # KL(softmax(target) || softmax(cand)) per candidate
        t = target.softmax(-1)
        return (t * (t.log() - cands.log_softmax(-1))).sum(-1)

    for i in range(b):
        if kl_branch[i]:
            t1, s2 = easy1[i, kl(m2[i, hard2[i]], m1[i, easy1[i]]).argmin()], hard2[i]
            t2, s1 = easy2[i, kl(m1[i, hard1[i]], m2[i, easy2[i]]).argmin()], hard1[i]
        elif reference:
            t1, s2, t2, s1 = d1.argmin(1), hard2, d2.argmin(1), hard1
        else:
            t1, s2, t2, s1 = d1[i].argmin(), hard2[i], d2[i].argmin(), hard1[i]
        p1[i, t1] = p1[i, t1] * (1 - disk) + p2[i, s2] * disk
        p2[i, t2] = p2[i, t2] * (1 - disk) + p1[i, s1] * disk
    out = torch.cat([p1, p2])  # (2B, G*G, C, ph*pw) -> (2B, C, H, W)
    return out.view(2 * b, grid, grid, ch, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(2 * b, ch, h, w)


@METHODS.register("sscd")
class SSCD(Method):
    @dataclasses.dataclass(frozen=True)
    class Params:
        pretrain: float = 10000 / 410000  # fraction of the iterations; the rest is split into len(stage_weights)
        entropy_start: float = 6000 / 10000  # fraction of pre-training after which the entropy term joins
        entropy_top: float = 0.2
        stage_weights: tuple[tuple[float, ...], ...] = STAGE_WEIGHTS  # W per stage over [1/2, 1/4, 1/8, full]
        u_weight: float = 0.5
        box: float = 2 / 3
        ema_decay: float = 0.99
        frozen_teacher: bool = False  # the reference: the teacher keeps the stage's initial weights
        pv_threshold: float = 0.8
        top2_threshold: float = 0.3
        lcc: bool = True
        jitter: float = 0.8  # ColorJitter(0.8, 0.8, 0.8, 0.2), always applied
        hue: float = 0.2
        p_cutout: float = 0.5
        reference_cutout: bool = False  # the reference: the cutout zeroes the label but not the image
        grid: int = 8  # CGSR patch grid per side (8 x 8 patches of 32 on 256 x 256)
        top_k: int = 4
        p_kl: float = 0.5  # probability of the KL-guided displacement per image
        reference_displacement: bool = False  # the reference's batch-wide indices in the other branch
        disk: float = 64 / 256  # central-disk radius, fraction of the side
        disk_stages: int = 3
        reference_masked_dice: bool = False  # the reference: the region mask one-hot encoded (region_dice)

        RANGES = {"pretrain": (0, 0.99), "entropy_start": (0, 1), "entropy_top": (0, 1), "u_weight": (0, None),
                  "ema_decay": (0, 1), "jitter": (0, 1), "hue": (0, 0.5), "p_cutout": (0, 1), "grid": (2, None),
                  "top_k": (1, None), "p_kl": (0, 1), "disk": (0, 0.5), "disk_stages": (0, None)}

        def __post_init__(self):
            if not 0 < self.box < 1:
                raise ValueError("box must be in (0, 1)")
            if not self.stage_weights or any(len(w) != 1 + len(HEADS) for w in self.stage_weights):
                raise ValueError(f"stage_weights must be a list of stages of {1 + len(HEADS)} weights each")
            if self.top_k > self.grid * self.grid:
                raise ValueError("top_k must be at most grid * grid")

    networks = {"student": Network(model={"deep_supervision": True}),
                "second": Network(model={"deep_supervision": True})}
    spatial_dims = (2,)

    def stages(self) -> list[Stage]:
        n = len(self.p.stage_weights)
        start = int(round(self.p.pretrain * self.iterations))
        length = (self.iterations - start) / n
        if length < 1:
            raise SslsegError(f"sscd: {self.iterations} iterations cannot hold pre-training and {n} stages")
        pre = [Stage("pretrain", 0)] if start else []
        return pre + [Stage(f"S{k + 1}", start + int(round(k * length)), restore_best=True, reset_optimisers=True)
                      for k in range(n)]

    def setup(self) -> None:
        self.teacher = make_ema(self.student)
        self.starts = {s.name: s.start for s in self.stages()}
        for net in (self.student, self.second):
            if not hasattr(net, "forward_aux") or len(getattr(net, "ds_heads", None) or ()) < len(HEADS):
                raise SslsegError("sscd needs a UNet with deep-supervision heads at 1/2, 1/4 and 1/8 of the input "
                                  "(model deep_supervision: true, at least 5 levels)")

    def modules(self):
        return {**self.nets, "teacher": self.teacher}

    def optimisers(self, sched: dict) -> list[torch.optim.Optimizer]:
        return [make_optimiser(net.parameters(), sched) for net in (self.student, self.second)]

    def also_validate(self) -> tuple[str, ...]:
        return ("second",) if self.stage == "S1" else ()  # S1's best second student seeds S2

    def _index(self) -> int:
        return int(self.stage[1:]) - 1

    def begin_stage(self, stage: Stage) -> None:
        """Students and teacher restart from the (restored) best student; S2 from S1's best second student."""
        if stage.name == "pretrain":
            return
        seed = self.best_states.get("second") if stage.name == "S2" else None
        seed = seed if seed is not None else self.student.state_dict()
        seed = {k: v.clone() for k, v in seed.items()}
        for net in (self.student, self.second, self.teacher):
            net.load_state_dict(seed)

    def outputs(self, net, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-resolution logits and R, the stage's W-weighted sum of every head nearest-resized to the input."""
        logits, aux = net.forward_aux(x)
        w = self.p.stage_weights[self._index()]
        r = w[-1] * logits.detach()
        for weight, name in zip(w, HEADS):
            if weight:
                r = r + weight * F.interpolate(aux[name].detach(), size=x.shape[2:])
        return logits, r

    def strong(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Colour jitter of a cutout image (p ``p_cutout``, filled with 0/1 noise, labelled background)."""
        box = cutmix_boxes(len(x), tuple(x.shape[2:]), self.p.p_cutout, device=x.device).bool()
        if not self.p.reference_cutout:
            noise = torch.randint(0, 2, x.shape, device=x.device).to(x)
            x = torch.where(box.unsqueeze(1), noise, x)
        y = None if y is None else torch.where(box, torch.zeros_like(y), y)
        return colour_jitter(x, self.p.jitter, 1.0, self.p.hue), y

    def _masking(self) -> str:
        return "onehot" if self.p.reference_masked_dice else "all"

    def pretrain_step(self, x_l, y_l, step):
        a, b = halves(x_l, "labelled", "sscd")
        ya, yb = halves(y_l, "labelled", "sscd")
        mask = bcp_box_mask(tuple(x_l.shape[2:]), x_l.device, self.p.box)
        x = a * mask + b * (1 - mask)
        logits = self.student(x)
        dice, ce = mix_loss(logits, ya, yb, mask, 1.0, 1.0, self._masking())
        logs = {"loss_mix": ((dice + ce) / 2).item()}
        if step > self.p.entropy_start * self.starts["S1"]:
            e = entropy_mask(logits.detach().softmax(1), self.p.entropy_top)
            y = (ya * mask + yb * (1 - mask)) * e
            out = self.student(x * e.unsqueeze(1))
            ce_e = F.cross_entropy(out, y.long())
            dice_e = region_dice(out.softmax(1), y, e, self._masking())
            dice, ce = dice + dice_e, ce + ce_e
            logs["loss_entropy"] = ((dice_e + ce_e) / 2).item()
        return (dice + ce) / 2, logs

    @torch.no_grad()
    def pseudo_labels(self, x: torch.Tensor) -> torch.Tensor:
        self.teacher.train()
        lab = pseudo_variance_gate(self.teacher(x), self.p.pv_threshold, self.p.top2_threshold)
        return largest_cc(lab, self.n_classes) if self.p.lcc else lab

    def training_step(self, batch, step):
        x_l, y_l = batch["x_l"], batch["y_l"]
        if self.stage == "pretrain":
            return self.pretrain_step(x_l, y_l, step)
        x_u = batch["x_u"]
        if len(x_u) != len(x_l):
            raise SslsegError("sscd needs batch_unlabelled == batch_labelled")
        x_ls, y_ls = self.strong(x_l, y_l)
        x_us, _ = self.strong(x_u, None)
        mask = bcp_box_mask(tuple(x_l.shape[2:]), x_l.device, self.p.box)
        outs, logs = [], {}
        total = 0.0
        for k, (net, xl, yl, xu) in enumerate(((self.student, x_l, y_l, x_u), (self.second, x_ls, y_ls, x_us))):
            a, b = halves(xl, "labelled", "sscd")
            ya, yb = halves(yl, "labelled", "sscd")
            ua, ub = halves(xu, "unlabelled", "sscd")
            pa, pb = self.pseudo_labels(ua), self.pseudo_labels(ub)
            x_mix = torch.cat([ua * mask + a * (1 - mask), b * mask + ub * (1 - mask)])
            logits, r = self.outputs(net, x_mix)
            h = len(a)
            dice_u, ce_u = mix_loss(logits[:h], pa, ya, mask, self.p.u_weight, 1.0, self._masking())
            dice_l, ce_l = mix_loss(logits[h:], yb, pb, mask, 1.0, self.p.u_weight, self._masking())
            mix = (dice_u + dice_l + ce_u + ce_l) / 2
            outs.append((x_mix, logits, r))
            total = total + mix
            logs[f"loss_mix{k + 1}"] = mix.item()
        (x1, lo1, r1), (x2, lo2, r2) = outs
        p1, p2 = lo1.softmax(1), lo2.softmax(1)
        cross = dice_loss(p1, p2.detach().argmax(1)) + dice_loss(p2, p1.detach().argmax(1))
        branch = torch.rand(len(x1)) < self.p.p_kl
        d = displace(x1, x2, p1.detach().max(1).values, p2.detach().max(1).values, r1, r2, self.p.grid,
                     self.p.top_k, branch, self.p.reference_displacement)
        q1, q2 = self.student(d).softmax(1), self.second(d).softmax(1)
        t1, t2 = q1.detach().argmax(1), q2.detach().argmax(1)
        disp = dice_loss(q1, t2) + dice_loss(q2, t1)
        total = total + cross + disp
        logs.update(loss_cross=cross.item() / 2, loss_displaced=disp.item() / 2)
        if self._index() < self.p.disk_stages:
            h, w = d.shape[2:]
            outside = ~central_disk(h, w, int(self.p.disk * min(h, w))).to(d.device).expand(len(d), h, w)
            disk = dice_loss(q1, t2, ignore=outside) + dice_loss(q2, t1, ignore=outside)
            total = total + disk
            logs["loss_disk"] = disk.item() / 2
        return total, logs

    def after_step(self, step: int) -> None:
        if self.stage == "pretrain" or self.p.frozen_teacher:
            return
        t = step - self.starts[self.stage] + 1  # the stage's iteration, from 1
        source = self.second if t % 2 == 0 else self.student
        ema_update(self.teacher, source, min(1 - 1 / (t + 1), self.p.ema_decay))
