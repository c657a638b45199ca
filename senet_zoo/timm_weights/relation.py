"""How a timm ``legacy_se*`` checkpoint relates to our conversion of the same caffemodel, tensor by tensor.

Each tensor of either is one of:

* ``identical``: same dtype, shape and bytes;
* ``rounding``: equal to float32 rounding (at most a few units in the last place);
* ``input fold``: the first convolution, and the BatchNorm after it, re-expressed for another input
  normalisation. Ours takes Caffe's input, (x - m) / s with m = (123, 117, 104)/255 and s = 1/255 on RGB in
  [0, 1]; a checkpoint for (x - mu) / sigma has conv1's input channel c scaled by sigma_c / s_c (and maybe
  its channels reversed, for BGR input), and the mean difference (mu - m) / s, pushed through conv1,
  either moved into bn1 (running_mean or bias; exact away from the zero-padded border) or left out. The
  scales, hence sigma, and the shift, hence mu, are *measured* from the two checkpoints, not assumed;
* ``batchnorm fold``: a BatchNorm whose four tensors differ but compute the same affine map
  gamma / sqrt(var + eps) and beta - mean * gamma / sqrt(var + eps);
* ``counter``: ``num_batches_tracked`` absent or different (a training counter; no effect in eval);
* ``different`` (with the largest absolute difference), ``missing`` (only ours), ``extra`` (only theirs).
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

IDENTICAL, ROUNDING, INPUT_FOLD, BN_FOLD = "identical", "rounding", "input fold", "batchnorm fold"
COUNTER, DIFFERENT, MISSING, EXTRA = "counter", "different", "missing", "extra"
SAME_FUNCTION = (IDENTICAL, ROUNDING, INPUT_FOLD, BN_FOLD, COUNTER)
BN_KEYS = ("weight", "bias", "running_mean", "running_var")
BN_EPS = 1e-5            # nn.BatchNorm2d's, which both timm's legacy_se* models and ours are built with
ROUNDING_ULPS = 4        # "rounding": |a - b| <= this many float32 eps of the larger magnitude
FOLD_RTOL = 2.0 ** -18   # a fold's residual, relative to the tensor's magnitude (float32 arithmetic, twice)


@dataclass
class Row:
    name: str
    relation: str
    max_abs_diff: float | None = None
    detail: str = ""


@dataclass
class InputFold:
    """What conv1 (and bn1) say about the input normalisation the other checkpoint expects."""
    reversed_channels: bool
    scale: tuple[float, ...]            # theirs / ours, per input channel (in their channel order)
    std: tuple[float, ...]              # the std their input is normalised with (RGB order)
    mean: tuple[float, ...] | None      # the mean folded into bn1, or None when bn1 carries none
    unfolded_shift: tuple[float, ...] | None = None   # with mean None: (mu - m)/s that timm's mean would need


@dataclass
class Comparison:
    rows: list[Row]
    fold: InputFold | None
    first_conv: str
    first_bn: str
    ours_mean: tuple[float, ...]
    ours_std: tuple[float, ...]
    theirs_mean: tuple[float, ...]
    theirs_std: tuple[float, ...]
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(collections.Counter(r.relation for r in self.rows))

    @property
    def same_function(self) -> bool:
        """Every tensor computes what ours does, given each checkpoint's own input normalisation."""
        if any(r.relation not in SAME_FUNCTION for r in self.rows):
            return False
        return self.fold is None or (self.fold.mean is not None and self._matches_theirs())

    def _matches_theirs(self) -> bool:
        f = self.fold
        ok = np.allclose(f.std, self.theirs_std, rtol=1e-5, atol=0)
        return bool(ok and (f.mean is None or np.allclose(f.mean, self.theirs_mean, rtol=0, atol=1e-4)))

    def verdict(self) -> str:
        differ = [r for r in self.rows if r.relation not in SAME_FUNCTION]
        if differ:
            worst = max(differ, key=lambda r: -1 if r.max_abs_diff is None else r.max_abs_diff)
            how = f"largest difference {worst.max_abs_diff:.3g} in {worst.name}" if worst.max_abs_diff is not None \
                else f"first {worst.name}: {worst.relation}"
            return f"DIFFERENT: {len(differ)} tensor(s) are not this conversion's ({how})"
        f = self.fold
        if f is None:
            kinds = {r.relation for r in self.rows} - {IDENTICAL, COUNTER}
            return "IDENTICAL: the same weights" + (f" (up to {', '.join(sorted(kinds))})" if kinds else "")
        where = f"{self.first_conv}" + ("" if f.mean is None else f" and {self.first_bn}")
        std = _fmt(f.std)
        if f.mean is not None:
            return (f"THIS CONVERSION, FOLDED: the same weights, re-expressed for input normalised with mean "
                    f"{_fmt(f.mean)}, std {std} (folded into {where})")
        seen = tuple(-v for v in f.unfolded_shift)
        return (f"THIS CONVERSION, std FOLDED, mean NOT: {where} takes input divided by std {std}, but nothing "
                f"absorbs the mean: normalised with mean {_fmt(self.theirs_mean)}, the network sees the release's "
                f"input shifted by {_fmt(seen, 3)} (in the units of its input, 0-255 for the caffemodels)")


def _fmt(values, digits: int = 4) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in values) + ")"


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def _plain(name: str, a: np.ndarray, b: np.ndarray) -> Row:
    if a.shape != b.shape:
        return Row(name, DIFFERENT, None, f"shape {tuple(b.shape)}, ours {tuple(a.shape)}")
    if a.dtype == b.dtype and np.array_equal(a, b):
        return Row(name, IDENTICAL, 0.0)
    diff = _max_abs(a, b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    eps = max(np.finfo(np.float32).eps, np.finfo(b.dtype).eps if b.dtype.kind == "f" else 0.0)
    if np.all(np.abs(a64 - b64) <= ROUNDING_ULPS * eps * np.maximum(np.abs(a64), np.abs(b64))):
        return Row(name, ROUNDING, diff, f"within {ROUNDING_ULPS} float32 units in the last place")
    return Row(name, DIFFERENT, diff)


def _channel_scales(ours: np.ndarray, theirs: np.ndarray, order: list[int]) -> tuple[np.ndarray, float]:
    """(least-squares theirs[:, c] / ours[:, order[c]] per input channel, worst residual relative to the
    tensor's magnitude)."""
    o = ours[:, order].astype(np.float64)
    t = theirs.astype(np.float64)
    axes = (0, 2, 3)
    den = np.sum(o * o, axis=axes)
    scale = np.where(den > 0, np.sum(t * o, axis=axes) / np.where(den > 0, den, 1), 0.0)
    residual = np.abs(t - o * scale[None, :, None, None])
    return scale, float(residual.max() / max(np.abs(t).max(), 1e-30))


def find_input_fold(ours: np.ndarray, theirs: np.ndarray, ours_std) -> InputFold | None:
    """conv1 re-expressed for another per-channel input scale (channels kept or reversed), or None."""
    if ours.ndim != 4 or ours.shape != theirs.shape or ours.shape[1] != 3:
        return None
    best = None
    for reverse in (False, True):
        order = [2, 1, 0] if reverse else [0, 1, 2]
        scale, rel = _channel_scales(ours, theirs, order)
        if rel <= FOLD_RTOL and np.all(scale > 0) and (best is None or rel < best[2]):
            best = (reverse, scale, rel)
    if best is None:
        return None
    reverse, scale, _ = best
    # theirs[:, c] = ours[:, order[c]] * sigma / s: sigma of the RGB channel that input c carries
    rgb_scale = scale[::-1] if reverse else scale
    std = tuple(float(v) * float(s) for v, s in zip(rgb_scale, ours_std))
    return InputFold(reverse, tuple(map(float, scale)), std, None)


def _affine(state: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    g, b, m, v = (state[f"{prefix}.{k}"].astype(np.float64) for k in BN_KEYS)
    scale = g / np.sqrt(v + BN_EPS)
    return scale, b - m * scale


def _has_bn(state: dict[str, np.ndarray], prefix: str) -> bool:
    return all(f"{prefix}.{k}" in state for k in BN_KEYS)


def _bn_rows(ours, theirs, prefix: str, relation: str, detail: str) -> list[Row]:
    rows = []
    for k in BN_KEYS:
        name = f"{prefix}.{k}"
        row = _plain(name, ours[name], theirs[name])
        if row.relation not in (IDENTICAL, ROUNDING):
            row = Row(name, relation, row.max_abs_diff, detail)
        rows.append(row)
    return rows


def _same_affine(ours, theirs, prefix: str) -> bool:
    (s_o, b_o), (s_t, b_t) = _affine(ours, prefix), _affine(theirs, prefix)
    tol = FOLD_RTOL * (np.abs(s_o) + np.abs(s_t)) + 1e-30
    return bool(np.all(np.abs(s_o - s_t) <= tol)
                and np.all(np.abs(b_o - b_t) <= FOLD_RTOL * (np.abs(b_o) + np.abs(b_t) + np.abs(s_o)) + 1e-30))


def _mean_fold(ours, theirs, conv: str, bn: str, fold: InputFold, ours_mean, ours_std) -> tuple[float, ...] | None:
    """The mean folded into bn1 (RGB), measured: their shift minus ours, divided by bn1's scale, is conv1
    applied to a constant input shift delta; delta is solved for (least squares over bn1's channels) and
    must explain every channel."""
    (s_o, b_o), (s_t, b_t) = _affine(ours, bn), _affine(theirs, bn)
    if not np.all(np.abs(s_o - s_t) <= FOLD_RTOL * (np.abs(s_o) + np.abs(s_t)) + 1e-30) or np.any(s_o == 0):
        return None
    d = (b_t - b_o) / s_o                                     # conv1 applied to the shift, per channel
    a = ours[f"{conv}.weight"].astype(np.float64).sum(axis=(2, 3))   # (out, 3): conv1 on a constant input
    delta, *_ = np.linalg.lstsq(a, d, rcond=None)
    fit = a @ delta
    running = np.abs(ours[f"{bn}.running_mean"].astype(np.float64))
    tol = 1e-5 * (np.abs(d) + running + np.abs(a) @ np.abs(delta)) + 1e-6 * max(float(running.max()), 1e-12)
    if not np.all(np.abs(fit - d) <= tol):
        return None
    # ours sees (x - m)/s = (sigma/s)·(x - mu)/sigma + delta with delta = (mu - m)/s: conv1 of the constant
    # delta is what their bn1 absorbed, so mu = m + delta·s (delta in ours' channel order, RGB)
    return tuple(float(m + dl * s) for m, dl, s in zip(ours_mean, delta, ours_std))


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], *, first_conv: str, first_bn: str,
            ours_mean, ours_std, theirs_mean, theirs_std) -> Comparison:
    """The relation of every tensor of ``theirs`` to ``ours`` (both {name: array})."""
    cmp = Comparison([], None, first_conv, first_bn, tuple(ours_mean), tuple(ours_std), tuple(theirs_mean),
                     tuple(theirs_std))
    done: set[str] = set()
    conv_w = f"{first_conv}.weight"

    # conv1 and bn1: the input fold
    if conv_w in ours and conv_w in theirs:
        row = _plain(conv_w, ours[conv_w], theirs[conv_w])
        if row.relation == DIFFERENT:
            fold = find_input_fold(ours[conv_w], theirs[conv_w], ours_std)
            if fold is not None:
                cmp.fold = fold
                order = "reversed (their first convolution takes BGR)" if fold.reversed_channels else "kept"
                row = Row(conv_w, INPUT_FOLD, row.max_abs_diff,
                          f"input channels {order}, scaled by {_fmt(fold.scale, 3)} = std {_fmt(fold.std)} / "
                          f"ours {_fmt(ours_std, 6)}")
        cmp.rows.append(row)
        done.add(conv_w)
    if cmp.fold is not None and _has_bn(ours, first_bn) and _has_bn(theirs, first_bn):
        names = [f"{first_bn}.{k}" for k in BN_KEYS]
        if all(_plain(n, ours[n], theirs[n]).relation in (IDENTICAL, ROUNDING) for n in names):
            shift = tuple(float((mu - m) / s) for mu, m, s in zip(theirs_mean, ours_mean, ours_std))
            cmp.fold.unfolded_shift = shift
            cmp.rows += [_plain(n, ours[n], theirs[n]) for n in names]
            done.update(names)
        else:
            mean = _mean_fold(ours, theirs, first_conv, first_bn, cmp.fold, ours_mean, ours_std)
            if mean is not None:
                cmp.fold.mean = mean
                cmp.rows += _bn_rows(ours, theirs, first_bn, INPUT_FOLD,
                                     f"the input mean {_fmt(mean)} folded in, through {first_conv}")
                done.update(names)

    for name in sorted(set(ours) | set(theirs)):
        if name in done:
            continue
        if name.endswith("num_batches_tracked"):
            if name in ours and name in theirs and _plain(name, ours[name], theirs[name]).relation == IDENTICAL:
                cmp.rows.append(Row(name, IDENTICAL, 0.0))
            else:
                cmp.rows.append(Row(name, COUNTER, None, "absent" if name not in theirs or name not in ours
                                    else "a different count"))
            continue
        if name not in theirs:
            cmp.rows.append(Row(name, MISSING, None, "not in their checkpoint"))
            continue
        if name not in ours:
            cmp.rows.append(Row(name, EXTRA, None, "not in this conversion"))
            continue
        prefix, _, key = name.rpartition(".")
        if key in BN_KEYS and _has_bn(ours, prefix) and _has_bn(theirs, prefix):
            names = [f"{prefix}.{k}" for k in BN_KEYS]
            plain = [_plain(n, ours[n], theirs[n]) for n in names]
            if all(r.relation in (IDENTICAL, ROUNDING) for r in plain) or not _same_affine(ours, theirs, prefix):
                cmp.rows += plain
            else:
                cmp.rows += _bn_rows(ours, theirs, prefix, BN_FOLD, "the same affine map gamma/sqrt(var+eps), "
                                     "beta - mean*gamma/sqrt(var+eps)")
            done.update(names)
            continue
        cmp.rows.append(_plain(name, ours[name], theirs[name]))
    if cmp.fold is not None and not cmp._matches_theirs():
        cmp.notes.append(f"the normalisation measured from the weights (std {_fmt(cmp.fold.std)}"
                         + (f", mean {_fmt(cmp.fold.mean)}" if cmp.fold.mean else "")
                         + f") is not the one the checkpoint is used with (mean {_fmt(theirs_mean)}, std "
                         f"{_fmt(theirs_std)})")
    return cmp
