"""The sequence tasks of ``jaxbp train``: ``sort`` and ``text --file FILE``, with a transformer.

``sort`` (:func:`jaxbp.data.sort_digits`) trains ``models.transformer`` to sort digit strings
and, before the final metrics, shows test strings sorted by the model's own generation;
``text`` reads ``--file`` (:func:`jaxbp.data.read_text`), trains a character-level language
model on windows of ``--context`` characters and, after the metrics, prints a line ``sample:``
and text the model generates (:func:`jaxbp.models.generate`, one jitted loop). This module only
checks the flags, builds the data and the model, and prints; :mod:`jaxbp.cli.train` runs it.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxbp.cli import UsageError, one_line
from jaxbp.cli.train_flags import SEQUENCE_DEFAULTS


def is_sequence(args) -> bool:
    """Whether the flags ask for a sequence task (sort or text: the transformer's)."""
    return args.dataset in SEQUENCE_DEFAULTS


def given(args) -> dict:
    """The transformer flags given (``None`` where unset)."""
    return {"d_model": args.d_model, "heads": args.heads, "blocks": args.blocks,
            "context": args.context}


def check_flags(args) -> None:
    """Flags that do not fit the task: a ``ValueError`` naming the flag and the fix."""
    data, model = args.dataset, getattr(args, "model", None)
    if model == "transformer" and data not in SEQUENCE_DEFAULTS:
        raise ValueError(f"--model transformer works on the sequence tasks sort and text, not "
                         f"{data!r}. Fix: jaxbp train sort --model transformer.")
    if data in SEQUENCE_DEFAULTS and model not in (None, "transformer"):
        raise ValueError(f"{data} is a sequence task, trained with --model transformer, not "
                         f"--model {model}. Fix: jaxbp train {data} (the transformer).")
    if getattr(args, "file", None) is not None and data != "text":
        raise ValueError(f"--file applies to the text task, not {data!r}. Fix: jaxbp train "
                         f"text --file {args.file}.")
    if data == "text" and getattr(args, "file", None) is None:
        raise ValueError("text needs the file to learn from. Fix: jaxbp train text --file "
                         "README.md.")
    if data != "text" and getattr(args, "context", None) is not None:
        raise ValueError(f"--context applies to the text task; {data}'s sequences have a "
                         f"fixed length. Fix: drop --context.")
    if not is_sequence(args):
        return
    for flag, value in (("--hidden", args.hidden), ("--activation", args.activation)):
        if value is not None:
            raise ValueError(f"{flag} does not apply to the transformer. Fix: set its size with "
                             f"--d-model, --heads and --blocks instead.")
    if args.dropout:
        raise ValueError("--dropout does not apply to the transformer (it has no dropout "
                         "layer). Fix: drop --dropout.")


def model(args, cfg) -> tuple:
    """``(dataset, models.Model)`` for sort; ``(dataset, Model, chars)`` for text."""
    from jaxbp import data, models

    size = dict(d_model=cfg["d_model"], num_heads=cfg["heads"], num_blocks=cfg["blocks"])
    if args.dataset == "sort":
        ds = data.load("sort", seed=args.seed)
        return ds, models.transformer(ds.num_classes, ds.train.x.shape[1], **size)
    try:
        text = data.read_text(args.file)
    except OSError as e:  # a path that cannot be read is a usage mistake too
        raise UsageError(f"--file: {one_line(e)}") from e
    chars = data.char_vocabulary(text)
    ds = data.text_windows(text, context=cfg["context"], chars=chars, seed=args.seed,
                           name=f"text of {args.file}")
    return ds, models.transformer(len(chars), cfg["context"], **size), chars


def print_sorted(net, params, test, out, show: int = 3) -> None:
    """Sorts the test strings by generation (greedy, each output token fed back in), prints a
    few and how many came out exactly sorted."""
    from jaxbp import models

    length = test.x.shape[1] // 2
    prompt = test.x[:, :length + 1]  # the digits and the separator
    made = np.asarray(models.generate(net, params, prompt, length, context=2 * length,
                                      temperature=0.0))[:, length + 1:]
    want = test.y[:, length:]
    exact = np.all(made == want, axis=1)
    out("sorted by generation (test strings, each token fed back in):")
    for digits, got, ok in zip(prompt[:show, :length], made[:show], exact[:show]):
        out(f"  {' '.join(map(str, digits))} -> {' '.join(map(str, got))}  "
            f"{'ok' if ok else 'WRONG'}")
    out(f"exactly sorted: {int(exact.sum())}/{len(exact)}")


def print_sample(args, s, params, key, out) -> None:
    """A line ``sample:``, then text generated from the start of a test window."""
    from jaxbp import data, models

    context = s.cfg["context"]
    prompt = s.ds.test.x[:1, :min(16, context)]
    ids = models.generate(s.net, params, prompt, args.sample_length, context=context,
                          key=jax.random.fold_in(key, 1), temperature=args.temperature)
    out("sample:")
    out(data.decode(ids[0], s.chars))


__all__ = ["check_flags", "given", "is_sequence", "model", "print_sample", "print_sorted"]
