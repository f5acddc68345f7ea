"""Staged evaluation of user functions: each operand of a stencil (shift, slice, gather) is computed once.

XLA's CPU fusion pass copies cheap elementwise producers into every consumer it fuses them
with, and it does not fuse a concatenation along the minor dimension (``jnp.roll`` of a batch
of vectors) with what follows it.  A function that alternates stencils and elementwise
arithmetic, such as a hand-written Runge–Kutta step ``kⱼ = f(x + h Σ aⱼᵢ kᵢ)`` of a field with
``jnp.roll``, is therefore compiled into one kernel per shift, each re-evaluating the whole
elementwise history since the function's input: work quadratic in the number of stages (on
Lorenz-96 with four RK4 substeps, 48 kernels holding 2,300 arithmetic operations where 120
suffice; 20-30× the time of the same arithmetic with each stage input stored once).
``optimization_barrier`` does not help: the CPU compiler removes it before fusion.

:func:`staged` traces the function and *stores* every value that a stencil reads and that has
more than one use: the value is computed, from the function's inputs and the values stored
before it, inside ``lax.cond(p, g, g)`` with two identical branches ``g`` and a predicate ``p``
that is ``True`` but comes out of a one-pass ``lax.while_loop`` (XLA does not fold it), and its
consumers read the conditional's result buffer.  A conditional is the cheapest construct XLA's
CPU backend keeps that it cannot fuse across (about 1 µs; a one-pass loop per value costs 2 µs,
``optimization_barrier`` is removed before fusion), and its predicate is not batched under
``vmap``, so it stays a conditional in batched filters too.  Everything else is left to XLA,
which now re-evaluates at most the elementwise stretch since the last stored value (an RK4
slope from its stored stage input).  The arithmetic is the function's own; only the kernel
boundaries move.  Functions without such a stencil are called unchanged.  Derivatives
(``jvp``, ``grad``, ``jacfwd``) are those of the unstaged function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.extend.core as jex
import jax.numpy as jnp

#: Primitives that read their operand at indices other than the output's own (stencils).
STENCIL_PRIMITIVES = frozenset(
    {
        "concatenate",
        "cumlogsumexp",
        "cummax",
        "cummin",
        "cumprod",
        "cumsum",
        "dynamic_slice",
        "dynamic_update_slice",
        "gather",
        "pad",
        "rev",
        "scatter",
        "scatter-add",
        "scatter-mul",
        "split",
        "slice",
        "transpose",
    }
)

#: Staging is abandoned when the stored values' slices together hold more than this many times the
#: program's steps: a long chain that no stencil reads (such as a reverse-mode cotangent sum) would
#: otherwise be recomputed by every conditional after it.  Forward programs and forward-mode Jacobians of
#: Runge–Kutta steps recompute 1.4-2.3 times their steps; reverse-mode Jacobians about 6.
MAX_RECOMPUTATION = 3.0

#: Call primitives whose body is inlined (``jax.jit``-decorated helpers such as ``jnp.roll``).
INLINED_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})


class Const(NamedTuple):
    """A literal or captured constant of the traced program."""

    value: Any


Atom = int | Const  # a value id of the flat program, or a constant


class Step(NamedTuple):
    """One primitive application of the flat program: ``outs = eqn.primitive(*ins)``."""

    eqn: Any  # the jaxpr equation (primitive and parameters)
    ins: tuple[Atom, ...]
    outs: tuple[int, ...]


class Program(NamedTuple):
    """A traced function with nested calls inlined: values ``0..num_inputs-1`` are its inputs."""

    num_inputs: int
    steps: tuple[Step, ...]
    outputs: tuple[Atom, ...]
    avals: dict[int, Any]  # value id -> abstract value (shape, dtype)


class Stored(NamedTuple):
    """A value computed once, in its own conditional, from program inputs and earlier stored values."""

    value: int
    steps: tuple[Step, ...]  # its backward slice, in program order
    inputs: tuple[int, ...]  # the program inputs and stored values the slice reads


def flatten(closed: jex.ClosedJaxpr) -> Program:
    """The program of ``closed`` with its constants then arguments as inputs and calls inlined."""
    counter = iter(range(1 << 62))
    avals: dict[int, Any] = {}

    def fresh(var) -> int:
        i = next(counter)
        avals[i] = var.aval
        return i

    steps: list[Step] = []

    def inline(jaxpr, env: dict[Any, Atom]) -> list[Atom]:
        def read(atom) -> Atom:
            return Const(atom.val) if isinstance(atom, jex.Literal) else env[atom]

        for eqn in jaxpr.eqns:
            ins = [read(a) for a in eqn.invars]
            body = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            if eqn.primitive.name in INLINED_CALLS and body is not None:
                inner, consts = (body.jaxpr, body.consts) if isinstance(body, jex.ClosedJaxpr) else (body, ())
                inner_env = {**dict(zip(inner.constvars, map(Const, consts))), **dict(zip(inner.invars, ins))}
                env.update(zip(eqn.outvars, inline(inner, inner_env)))
                continue
            outs = tuple(fresh(v) for v in eqn.outvars)
            steps.append(Step(eqn, tuple(ins), outs))
            env.update(zip(eqn.outvars, outs))
        return [read(a) for a in jaxpr.outvars]

    top = closed.jaxpr
    inputs = {v: fresh(v) for v in (*top.constvars, *top.invars)}
    outputs = inline(top, dict(inputs))
    return Program(len(inputs), tuple(steps), tuple(outputs), avals)


def plan(program: Program) -> dict[int, Stored]:
    """The values to store: those read by a stencil step and used more than once, with their slices.

    Such a value would otherwise be recomputed inside each of its consumers' kernels, and with
    it everything it depends on back to the last stored value.  Keyed by the producing step;
    empty when nothing needs storing or the slices would exceed :data:`MAX_RECOMPUTATION`.
    """
    uses: dict[int, int] = {}
    producer: dict[int, int] = {}
    for k, step in enumerate(program.steps):
        producer.update((i, k) for i in step.outs)
        for a in step.ins:
            if isinstance(a, int):
                uses[a] = uses.get(a, 0) + 1
    for a in program.outputs:
        if isinstance(a, int):
            uses[a] = uses.get(a, 0) + 1
    chosen = {
        a
        for step in program.steps
        if step.eqn.primitive.name in STENCIL_PRIMITIVES
        for a in step.ins
        if isinstance(a, int) and a in producer and uses[a] > 1
    }

    stored: dict[int, list[Stored]] = {}
    frontier = set(range(program.num_inputs))
    for value in sorted(chosen, key=producer.__getitem__):
        slice_steps, inputs, todo = set(), set(), [value]
        while todo:
            i = todo.pop()
            if i in frontier:
                inputs.add(i)
            elif producer[i] not in slice_steps:
                slice_steps.add(producer[i])
                todo.extend(a for a in program.steps[producer[i]].ins if isinstance(a, int))
        steps = tuple(program.steps[k] for k in sorted(slice_steps))
        stored.setdefault(producer[value], []).append(Stored(value, steps, tuple(sorted(inputs))))
        frontier.add(value)
    recomputed = sum(len(s.steps) for group in stored.values() for s in group)
    return stored if recomputed <= MAX_RECOMPUTATION * len(program.steps) else {}


def evaluate(steps: Sequence[Step], values: dict[int, Any]) -> dict[int, Any]:
    """Apply ``steps`` in order, reading and extending ``values`` (value id -> array)."""

    def read(a: Atom):
        return a.value if isinstance(a, Const) else values[a]

    for step in steps:
        params = step.eqn.primitive.get_bind_params(step.eqn.params)
        out = step.eqn.primitive.bind(*map(read, step.ins), **params)
        values.update(zip(step.outs, out if step.eqn.primitive.multiple_results else (out,)))
    return values


def opaque_true() -> jax.Array:
    """``True``, from a ``lax.while_loop`` whose loop-carried flag stops it after one pass.

    XLA does not evaluate loops at compile time, so to the compiler this is a run-time value.
    """
    false, true = jnp.asarray(False), jnp.asarray(True)
    return jax.lax.while_loop(lambda carry: carry[0], lambda carry: (false, true), (true, false))[1]


def compute_stored(stored: Stored, values: dict[int, Any], pred: jax.Array) -> Any:
    """``stored.value`` computed inside ``lax.cond(pred, slice, slice)`` (two identical branches).

    The result is the same whichever branch runs; XLA cannot fold the predicate, so it keeps the
    conditional, whose result is a stored buffer and whose branches it cannot fuse with the rest.
    """

    def branch(*inputs):
        return evaluate(stored.steps, dict(zip(stored.inputs, inputs)))[stored.value]

    return jax.lax.cond(pred, branch, branch, *(values[i] for i in stored.inputs))


def run(program: Program, inputs: Sequence, stored: dict[int, list[Stored]] | None = None) -> list:
    """Evaluate ``program`` on ``inputs`` step by step, replacing each planned value by its stored copy."""
    values = dict(enumerate(inputs))
    pred = opaque_true() if stored else None
    for k, step in enumerate(program.steps):
        evaluate((step,), values)
        for s in (stored or {}).get(k, ()):
            values[s.value] = compute_stored(s, values, pred)
    return [a.value if isinstance(a, Const) else values[a] for a in program.outputs]


def staged(fn: Callable) -> Callable:
    """``fn`` with each stencil operand of more than one use computed once (see the module docstring).

    Same arguments, results (pytrees of arrays) and arithmetic as ``fn``; compose with ``vmap``
    in either order.  ``jvp``, ``grad`` and ``vmap`` go through the conditionals (the tangents
    and cotangents of a stored value are stored with it); staging a derivative itself
    (``staged(jax.jacfwd(f))``) also stores the derivative's own stencil operands.
    """

    @functools.wraps(fn)
    def call(*args):
        closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        program = flatten(closed)
        stored = plan(program)
        if not stored:
            return fn(*args)

        outputs = run(program, [*closed.consts, *jax.tree.leaves(args)], stored)
        return jax.tree.unflatten(jax.tree.structure(shape), outputs)

    return call
