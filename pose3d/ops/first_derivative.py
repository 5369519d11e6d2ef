"""Backward formulas without a derivative of their own: a second derivative is an error.

The fused ops' backwards are ops of their own with no autograd formula, so differentiating
a gradient through them would give zero, silently. `first_derivative_only` makes it raise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch._C import _functions


def first_derivative_only(op: str) -> Callable[[Callable], Callable]:
    """Decorator for the backward of a registered op (torch.library.register_autograd).

    Runs the backward without grad. When a graph of the gradient is being built
    (create_graph=True) and its incoming gradients or saved inputs require grad, its outputs
    get a grad_fn that raises "`op` has no second derivative" when differentiated. This is
    torch.autograd.function.once_differentiable, which looks at the incoming gradients only:
    in `grad(f(x).sum(), x, create_graph=True)` those do not require grad, x does, and the
    gradient would come back without a grad_fn, so differentiating it would raise a
    confusing error or, summed with other terms, contribute a silent zero.
    """

    def decorate(backward: Callable) -> Callable:
        @functools.wraps(backward)
        def wrapper(ctx, *grads):
            with torch.no_grad():
                outputs = backward(ctx, *grads)
            inputs = (*grads, *ctx.saved_tensors)
            if not torch.is_grad_enabled() or not any(
                    isinstance(t, torch.Tensor) and t.requires_grad for t in inputs):
                return outputs
            single = not isinstance(outputs, tuple)
            outs = (outputs,) if single else outputs
            message = (f"{op} has no second derivative: its backward is not differentiable "
                       f"(do not differentiate a gradient taken through it)")
            err_fn = _functions.DelayedError(message.encode(), len(outs))
            errs = err_fn(*[None if t is None else t.detach().requires_grad_() for t in outs])
            errs = errs if isinstance(errs, tuple) else (errs,)
            return errs[0] if single else tuple(errs)

        return wrapper

    return decorate
