"""Picking the logits out of a model's output: a tensor, a key or attribute name, an index or a callable."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Output = str | int | Callable[[Any], torch.Tensor] | None


def check_output_selector(output: Any) -> Output:
    if output is None or callable(output):
        return output  # type: ignore[no-any-return]
    if isinstance(output, bool) or not isinstance(output, (int, str)):
        raise TypeError(f"output must be None, a key or attribute name (e.g. 'logits'), an index (e.g. 0) or a callable "
                        f"picking the logits from the model's output, got {type(output).__name__} ({output!r}).")
    if isinstance(output, str) and not _KEY.match(output):
        raise ValueError(f"output must be a key or attribute name such as 'logits', got {output!r}.")
    return output


def _describe(out: Any) -> str:
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {list(out)[:8]}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items ({', '.join(type(o).__name__ for o in out[:4])})"
    fields = [k for k in ("logits", "last_hidden_state", "pooler_output") if hasattr(out, k)]
    return f"a {type(out).__name__}" + (f" with attributes {fields}" if fields else "")


def select_output(out: Any, output: Output) -> torch.Tensor:
    """The logits tensor in a model's output: the output itself (``output=None``), ``out[key]`` /
    ``out.key`` (a name), ``out[i]`` (an index) or ``output(out)`` (a callable)."""
    picked = out
    if output is None:
        if isinstance(out, torch.Tensor):
            return out
        hint = ("output='logits'" if (isinstance(out, Mapping) and "logits" in out) or hasattr(out, "logits")
                else "output=0" if isinstance(out, (tuple, list)) else "output=<key, index or function>")
        raise TypeError(f"the model returned {_describe(out)}, not a logits tensor. Tell the Classifier which part holds "
                        f"the logits: Classifier(model, num_classes, ..., {hint}).")
    if callable(output):
        picked = output(out)
    elif isinstance(output, int):
        if not isinstance(out, (tuple, list)) or not -len(out) <= output < len(out):
            raise TypeError(f"output={output} selects an item by index, but the model returned {_describe(out)}.")
        picked = out[output]
    else:
        if isinstance(out, Mapping) and output in out:
            picked = out[output]
        elif not isinstance(out, Mapping) and hasattr(out, output):
            picked = getattr(out, output)
        else:
            raise TypeError(f"output={output!r} names a key or attribute the model's output does not have: it returned "
                            f"{_describe(out)}.")
    if not isinstance(picked, torch.Tensor):
        raise TypeError(f"output={output!r} picked a {type(picked).__name__} from the model's output ({_describe(out)}), "
                        "not a logits tensor.")
    return picked
