"""Flat parameter buffers for the optimizers: one contiguous array per dtype.

With many small tensors, most of an optimizer step is per-tensor Python overhead. A
:class:`FlatGroups` keeps the parameters of each dtype in one buffer (every ``param.data``
becomes a view of it) and the rule's state as flat arrays, so an elementwise rule runs once on
the concatenation (the kernels of :mod:`course.fast.numpy` read the per-parameter gradients as
segments of it, without concatenating them). Right only for elementwise rules; :class:`course.optim.Optimizer` uses it
for its own reference rule by default and never for a rule passed as ``update=``.

The layout changes memory, not arithmetic: ``course.backend.standard_only()`` leaves it on.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import backend as B

State = dict[str, Any]


def joined(grad: Any) -> Any:
    """One flat array from the per-parameter gradients a flat group passes to a kernel (a list,
    the segments of the flat buffer in order); an array is returned as it is."""
    if not isinstance(grad, list):
        return grad
    return B.xp.concat([B.xp.reshape(g, (-1,)) for g in grad])


class _Group:
    """Parameters of one dtype held in one contiguous buffer, and their state as flat arrays.

    Each parameter keeps its memory order: a column-major one (``course.fast`` stores Linear
    weights so) lies in the buffer as its transpose, row-major, and its view is transposed back.
    """

    __slots__ = ("index", "buffer", "views", "slices", "flipped", "state", "active", "published")

    def __init__(self, index: list[int], params: list[Any]) -> None:
        self.index = index
        arrays = [params[i].data for i in index]
        self.flipped = [B.column_major(a) for a in arrays]
        self.buffer = B.xp.concat([self.flat(a, k) for k, a in enumerate(arrays)])
        self.slices, start = [], 0
        for a in arrays:
            self.slices.append(slice(start, start + a.size))
            start += a.size
        self.views = [self.shaped(self.buffer[s], k, tuple(a.shape))
                      for k, (s, a) in enumerate(zip(self.slices, arrays))]
        for i, view in zip(index, self.views):
            params[i].data = view
        self.state: State = {}
        self.active, self.published = True, True

    def flat(self, a: Any, k: int) -> Any:
        """Parameter ``k``'s array ``a`` (its value, gradient or state) 1-D in buffer order."""
        return B.xp.reshape(a.T if self.flipped[k] else a, (-1,))

    def shaped(self, piece: Any, k: int, shape: tuple[int, ...]) -> Any:
        """The view of a 1-D ``piece`` in buffer order as parameter ``k``'s array of ``shape``."""
        return B.xp.reshape(piece, shape[::-1]).T if self.flipped[k] else B.xp.reshape(piece, shape)


class FlatGroups:
    """The flat groups of one optimizer (``opt.params``, ``opt._state``, ``opt.update``).

    A group falls back to per-parameter updates for good once some, not all, of its parameters
    get no gradient in a step (their states would diverge). ``loose`` lists the parameters in
    no group (a dtype with a single parameter).
    """

    def __init__(self, opt: Any) -> None:
        self.opt = opt
        by_dtype: dict[Any, list[int]] = {}
        for i, p in enumerate(opt.params):
            by_dtype.setdefault(p.dtype, []).append(i)
        self.groups = [_Group(index, opt.params) for index in by_dtype.values() if len(index) > 1]
        grouped = {i for g in self.groups for i in g.index}
        self.loose = [i for i in range(len(opt.params)) if i not in grouped]

    def step(self, kern: Callable[..., None] | None) -> None:
        """Update every group: in one call, or per parameter once a group has fallen back."""
        for group in self.groups:
            if not (group.active and self._step(group, kern)):
                for i in group.index:
                    self.opt._param_step(i, kern)

    def publish(self) -> None:
        """Make ``opt._state`` current: per-parameter views of the flat state arrays."""
        for group in self.groups:
            if not group.published:
                self._publish(group)

    def repack(self) -> None:
        """Rebuild the flat states from ``opt._state`` (after ``load_state_dict``)."""
        for group in self.groups:
            self._pack(group)

    def _step(self, group: _Group, kern: Callable[..., None] | None) -> bool:
        opt = self.opt
        grads = []
        for k, i in enumerate(group.index):
            p = opt.params[i]
            if p.data is not group.views[k] and not self._reattach(group, k):
                self._publish(group)
                group.active = False
                return False
            if p.grad is None:
                if all(opt.params[j].grad is None for j in group.index):
                    return True  # nothing to update; the states stay in step
                self._publish(group)
                group.active = False
                return False
            g = p.grad.data
            if tuple(g.shape) != tuple(p.data.shape):
                raise ValueError(f"parameter {i} has shape {p.shape} but its gradient has shape {tuple(g.shape)}")
            grads.append(g.T if group.flipped[k] else g)  # in buffer order (a view for a matching layout)
        if kern is not None:  # the kernels take the segments: no concatenated copy of the gradients
            kern(group.buffer, grads, group.state)
        else:
            new, new_state = opt.update(group.buffer, joined(grads), group.state, lr=opt.lr, **opt.hyperparams)
            opt._write(group.buffer, new, "the flattened parameters")
            for key, value in new_state.items():  # copy into the existing arrays: views stay valid
                old = group.state.get(key)
                if B.is_array(old) and B.is_array(value) and old.shape == value.shape:
                    old[...] = value
                else:  # a new entry; two entries must not share one array (both are written in place)
                    shared = any(value is v for v in group.state.values()) and B.is_array(value)
                    group.state[key] = B.copy_array(value) if shared else value
        group.published = False
        return True

    def _reattach(self, group: _Group, k: int) -> bool:
        """Someone assigned a new array to ``param.data`` (e.g. ``load_state_dict``): copy it into
        the buffer and re-point. False when it is of another array type or dtype (``model.to``)
        before any step: the group is then updated per parameter, on the new arrays."""
        i, view = group.index[k], group.views[k]
        new = self.opt.params[i].data
        same_kind = type(new) is type(view) and new.dtype == view.dtype
        if not same_kind and not group.state and tuple(new.shape) == tuple(view.shape):
            return False
        if not same_kind or tuple(new.shape) != tuple(view.shape):
            raise ValueError(
                f"parameter {i} was replaced by an array of another type, shape or dtype "
                f"({type(new).__name__} {tuple(new.shape)} {new.dtype}) after the optimizer took "
                "steps; create the optimizer after moving or converting the model"
            )
        view[...] = new
        self.opt.params[i].data = view
        return True

    def _publish(self, group: _Group) -> None:
        n = group.buffer.shape[0]
        for k, (i, s, view) in enumerate(zip(group.index, group.slices, group.views)):
            self.opt._state[i] = {
                key: group.shaped(v[s], k, tuple(view.shape)) if B.is_array(v) and tuple(v.shape) == (n,) else v
                for key, v in group.state.items()
            }
        group.published = True

    def _pack(self, group: _Group) -> None:
        """Rebuild the flat state from per-parameter states, if they agree (same step and keys)."""
        xp, opt = B.xp, self.opt
        states = [opt._state.get(i, {}) for i in group.index]
        first = states[0]
        arrays = [k for k, v in first.items() if B.is_array(v)]
        agree = all(
            s.keys() == first.keys()
            and all(s[k] == first[k] for k in first if k not in arrays)
            and all(B.is_array(s[k]) and tuple(s[k].shape) == tuple(opt.params[i].shape) for k in arrays)
            for i, s in zip(group.index, states)
        )
        group.active, group.published = agree, True
        if agree:
            group.state = {k: v for k, v in first.items() if k not in arrays}
            for k in arrays:
                group.state[k] = xp.concat([group.flat(s[k], j) for j, s in enumerate(states)])
            self._publish(group)


B.register_kernel("flat_buffers", "numpy")(FlatGroups)
B.register_kernel("flat_buffers", "cupy")(FlatGroups)
