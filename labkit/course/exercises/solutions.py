"""Every exercise's solution, for an instructor: the answer computed by labkit, and why, in one line each.

    from labkit.course.exercises import solutions
    solutions.print_all()                                # every notebook
    solutions.print_all("05")                            # one notebook
    print(solutions.solution("05", "batch_hard_loss"))   # one exercise
    solutions.exercises("triplet_losses")                # the exercise names of a notebook

Nothing here is hard-coded: each solution is the `Exercise` its checker builds (the same one
``check_x(answer, reveal=True)`` prints), computed at call time with the notebook's inputs. A few need the
course's model, tokenizer or a dataset (notebooks 00 and 01), which are loaded on first use. An exercise that
takes inputs (e.g. ``check_epoch_length(answer, class_sizes, p, k)``) accepts other ones as keyword
arguments: ``solution("02", "epoch_length", class_sizes=[10, 7], p=2, k=3)``.
"""
from __future__ import annotations

import importlib
from typing import Iterator

# Checker module of each notebook, in course order: notebooks/NN_<module>.ipynb.
NOTEBOOKS = ("start_here", "tokenization", "dataset_and_sampler", "pooling", "pair_losses", "triplet_losses",
             "similarity_losses", "in_batch_negatives", "loss_playground", "training", "clusters", "choosing_a_loss",
             "reproducing_the_article", "scaling_up", "retrieval_finetuning", "smaller_and_cheaper")


def _module_name(notebook) -> str:
    """'05', 5, '05_triplet_losses', 'triplet_losses' or '05_triplet_losses.ipynb' -> 'triplet_losses'."""
    text = str(notebook).strip().removesuffix(".ipynb").split("/")[-1]
    if text.isdigit():
        number = int(text)
        if 0 <= number < len(NOTEBOOKS):
            return NOTEBOOKS[number]
    elif text in NOTEBOOKS:
        return text
    else:
        number, _, rest = text.partition("_")
        if number.isdigit() and int(number) < len(NOTEBOOKS) and NOTEBOOKS[int(number)] == rest:
            return rest
    raise KeyError(f"No notebook {notebook!r}; the notebooks are " + ", ".join(
        f"{i:02d}_{name}" for i, name in enumerate(NOTEBOOKS)) + ".")


def _builders(notebook) -> dict:
    module = importlib.import_module(f"labkit.course.exercises.{_module_name(notebook)}")
    return module._EXERCISES


def exercises(notebook) -> list[str]:
    """The exercise names of a notebook, in order (the checker of ``"x"`` is ``check_x``)."""
    return list(_builders(notebook))


def exercise(notebook, name: str, **inputs):
    """The `Exercise` the checker of `name` builds: expected answer, hint, slips, reason."""
    builders = _builders(notebook)
    key = name.removeprefix("check_")
    if key not in builders:
        raise KeyError(f"No exercise {name!r} in notebook {_module_name(notebook)}; it has {', '.join(builders)}.")
    return builders[key](**inputs)


def solution(notebook, name: str, **inputs) -> str:
    """One line: the checker, its answer (computed by labkit) and why."""
    found = exercise(notebook, name, **inputs)
    return f"{found.checker}: {found.solution}"


def _all(notebooks) -> Iterator[tuple[str, str]]:
    for notebook in notebooks:
        module = _module_name(notebook)
        for name in exercises(module):
            yield module, name


def print_all(*notebooks) -> None:
    """Print the solutions of the given notebooks (all of them by default), grouped by notebook."""
    current = None
    for module, name in _all(notebooks or NOTEBOOKS):
        if module != current:
            current = module
            print(f"\n## {NOTEBOOKS.index(module):02d}_{module}")
        print("- " + solution(module, name))
