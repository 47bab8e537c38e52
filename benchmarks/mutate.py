"""Mutation testing of the sans-I/O modules: does the test suite notice a small wrong change?

A small AST mutator, no dependency beyond the test group. For each mutant of the target
modules (a comparison flipped, ``and``/``or`` swapped, a ``not`` dropped, a boolean flipped,
an integer moved by one, ``+``/``-`` swapped, a returned value replaced by ``None``) it writes
the mutated module into a temporary copy of the package and its tests (the working tree is
never touched), runs a fast, socket-free subset of the tests against that copy, and reports
the mutants the tests killed and those that survived, with their line and change.

    python benchmarks/mutate.py                        # every mutant (nox -s mutation)
    python benchmarks/mutate.py --max-mutants 150      # a reproducible sample (--seed)
    python benchmarks/mutate.py --module aiorunlist/_attempts.py --jobs 2
    python benchmarks/mutate.py --module aiorunlist/_convert.py   # runs its own tests too

Exit status 1 when the share of survivors passes ``--fail-over`` (percent).
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["aiorunlist/_protocol.py", "aiorunlist/_attempts.py"]
# Socket-free tests that exercise the target modules; fast enough to run once per mutant.
TESTS = ["tests/test_protocol.py", "tests/test_attempts.py", "tests/test_hostile.py"]
# Modules with tests of their own beyond TESTS (run first: they fail fastest on a mutant).
MODULE_TESTS: dict[str, list[str]] = {
    "aiorunlist/_convert.py": [
        "tests/test_convert_edges.py",
        "tests/test_late_typing.py",
        "tests/test_models.py",
        "tests/test_dumps.py",
        "tests/test_page_raw.py",
        "tests/test_protocol.py",
    ],
}

# Mutants that change no behaviour, each with the reason: (module, line, before, after) -> why.
# They are reported apart and left out of the survival rate. Keyed by line on purpose: once
# the module changes, each is judged again.
_P = "aiorunlist/_protocol.py"
_C = "aiorunlist/_convert.py"
_WINDOW = (
    "a window one byte wider or narrower still holds the run: a hit's three sampled digits lie"
    " in it, so it starts at most 6 bytes before the hit, and a run starting at the hit is"
    " also the next hit's"
)
_CAP = (
    "a cap on what the hooks remember (key sets, shared instances): one more or one less"
    " changes the memory bound by one entry, never a result"
)
_UNION_STR = "typing.get_origin(tp) in (typing.Union, types.UnionType) and str in args"
_THAW = "a dict, list or tuple then takes the general Mapping / sequence branch: the same copy"
_COPY_DEFAULT = "every caller passes copy: the default is never used"
EQUIVALENT: dict[tuple[str, int, str, str], str] = {
    (_P, 100, "ord(c) < 32", "ord(c) <= 32"): "a space (32) is refused by c.isspace() first",
    (_P, 100, "32", "33"): "a space (32) is refused by c.isspace() first",
    (_P, 100, "32", "31"): "chr(31) is refused by c.isspace() first",
    (_P, 280, "57", "58"): "':' sampled as a digit: one more candidate, the regex decides",
    (_P, 280, "48", "47"): (
        "'/' sampled as a digit: one more candidate, the regex decides (the other 48 on the line,"
        " the byte written for a digit, is killed by the big-integer tests)"
    ),
    (_P, 295, "0", "1"): (
        "a 19-digit run from byte 0 fits in 64 bits (orjson keeps it exact); a longer one still"
        " has 19 digits from byte 1"
    ),
    (_P, 295, "0", "-1"): "re's search treats a negative start as 0",
    (_P, 582, "True", "False"): (
        "the URL is build_url's, already percent-encoded: yarl keeps valid escapes on re-quoting"
    ),
    (_P, 298, "return False", "return None"): "_exact_needed() is only ever used as a condition",
    (_P, 423, "return status in RETRYABLE_STATUSES or status >= 500", "return None"): (
        "with retryable=None the error computes the same rule itself"
    ),
    (_P, 280, "120", "121"): "any byte but '0' marks a non-digit alike",
    (_P, 280, "120", "119"): "any byte but '0' marks a non-digit alike",
    (_P, 295, "19", "18"): _WINDOW,
    (_P, 295, "19", "20"): _WINDOW,
    (_P, 295, "18", "19"): _WINDOW,
    (_P, 295, "18", "17"): _WINDOW,
    (_P, 417, "return False", "return None"): (
        "with retryable=None the error computes its own default, which never retries a quota"
        " error either"
    ),
    (_P, 559, "index < len(items)", "index <= len(items)"): (
        "failing_index returns len(items) only when no run fails alone, and which_run is only"
        " called after one did"
    ),
    (_C, 285, "0", "-1"): "root is a list of one item: root[-1] is root[0]",
    (_C, 178, _UNION_STR, _UNION_STR.replace(" and ", " or ")): (
        "str is among the arguments of no field type but unions and dict[str, Any], which is"
        " an object kind, told two lines above"
    ),
    (_C, 290, "c is dict or c is FrozenDict", "c is dict and c is FrozenDict"): _THAW,
    (_C, 292, "c is list or c is tuple", "c is list and c is tuple"): _THAW,
    (_C, 301, "True", "False"): _COPY_DEFAULT,
    (_C, 470, "False", "True"): "nested is never read",
    (_C, 522, "1", "2"): (
        "the float check's second test then reads the field again: one more dict look-up,"
        " the same value"
    ),
    (_C, 330, "0", "-1"): "args has one item here: args[-1] is args[0]",
    (_C, 592, "True", "False"): "outs gets one entry per field: strict only checks that",
    (_C, 528, "nested or bool(at)", "nested and bool(at)"): "nested is never read",
    (_C, 273, "0", "-1"): "root is a list of one item: root[-1] is root[0]",
    (_C, 394, "len(self.interned) >= _MAX_SHAPES", "len(self.interned) > _MAX_SHAPES"): _CAP,
    (_C, 614, "True", "False"): (
        "only a traceback shows these lines, and it strips each line's end"
    ),
    (_P, 588, "True", "False"): (
        "both parts joined are encoded already (the URL by build_url, the Location by yarl's"
        " URL()): re-quoting them changes nothing"
    ),
    (_C, 311, "True", "False"): _COPY_DEFAULT,
    (_C, 741, "return len(items)", "return None"): (
        "reached only when no item fails, and failing_index is only called after one did"
    ),
    (_C, 336, "64", "65"): _CAP,
    (_C, 336, "64", "63"): _CAP,
    (_C, 338, "256", "257"): _CAP,
    (_C, 338, "256", "255"): _CAP,
    (_C, 906, "False", "True"): (
        "dumps' ASCII encoder never sees a float that is not finite: they were replaced by"
        " null before the encoder before it"
    ),
}


_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


@dataclass(frozen=True)
class Mutant:
    """One change: the ``index``-th mutation point of ``module``, ``variant`` of its kinds."""

    module: str
    index: int
    variant: int
    line: int
    before: str
    after: str

    @property
    def label(self) -> str:
        return f"{self.module}:{self.line}: {self.before}  ->  {self.after}"


def _skipped(tree: ast.Module) -> set[int]:
    """Ids of nodes never mutated: docstrings, annotations, ``__all__``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        annotations: list[ast.AST | None] = []
        if isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None:
                    annotations.append(arg.annotation)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            annotations.append(node.value)
        for annotation in annotations:
            if annotation is not None:
                skip.update(id(n) for n in ast.walk(annotation))
    return skip


def _variants(node: ast.AST) -> list[ast.AST | None]:
    """The mutated replacements of ``node`` (``None`` in a list: not applicable)."""
    if isinstance(node, ast.Compare):
        out: list[ast.AST | None] = []
        for i, op in enumerate(node.ops):
            flipped = _FLIP.get(type(op))
            if flipped is not None:
                new = copy.deepcopy(node)
                new.ops[i] = flipped()
                out.append(new)
        return out
    if isinstance(node, ast.BoolOp):
        new_op: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return [ast.BoolOp(op=new_op, values=copy.deepcopy(node.values))]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return [copy.deepcopy(node.operand)]
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            return [ast.Constant(value=not node.value)]
        if isinstance(node.value, int):
            return [ast.Constant(value=node.value + 1), ast.Constant(value=node.value - 1)]
        return []
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        # "a" + "b" on strings: only numbers are mutated (a swap to - would merely crash).
        if any(
            isinstance(side, ast.Constant) and isinstance(side.value, str)
            for side in (node.left, node.right)
        ) or isinstance(node.left, ast.JoinedStr):
            return []
        new_bin = copy.deepcopy(node)
        new_bin.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        return [new_bin]
    if isinstance(node, ast.Return) and node.value is not None:
        if isinstance(node.value, ast.Constant) and node.value.value is None:
            return []
        return [ast.Return(value=ast.Constant(value=None))]
    return []


def _points(tree: ast.Module) -> Iterator[tuple[ast.AST, list[ast.AST | None]]]:
    skip = _skipped(tree)
    for node in ast.walk(tree):
        if id(node) in skip or isinstance(node, ast.JoinedStr):
            continue
        variants = _variants(node)
        if variants:
            yield node, variants


def _in_fstring(tree: ast.Module) -> set[int]:
    """Nodes inside f-strings: their text is only shown, mutating it tests nothing."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inside.update(id(n) for n in ast.walk(node))
    return inside


def mutants(module: str) -> list[Mutant]:
    """Every mutant of ``module`` (a path relative to the project root)."""
    tree = ast.parse((ROOT / module).read_text())
    shown = _in_fstring(tree)
    out: list[Mutant] = []
    for index, (node, variants) in enumerate(_points(tree)):
        if id(node) in shown:
            continue
        for variant, new in enumerate(variants):
            if new is None:
                continue
            out.append(
                Mutant(
                    module=module,
                    index=index,
                    variant=variant,
                    line=getattr(node, "lineno", 0),
                    before=ast.unparse(node).splitlines()[0][:90],
                    after=ast.unparse(new).splitlines()[0][:90],
                )
            )
    return out


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, new: ast.AST) -> None:
        self.target = target
        self.new = new

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return ast.copy_location(self.new, node)
        result: ast.AST = super().visit(node)
        return result


def mutated_source(mutant: Mutant) -> str:
    """The module's source with ``mutant`` applied (unparsed from the AST)."""
    tree = ast.parse((ROOT / mutant.module).read_text())
    for index, (node, variants) in enumerate(_points(tree)):
        if index == mutant.index:
            new = variants[mutant.variant]
            assert new is not None
            changed = _Replace(node, new).visit(tree)
            return ast.unparse(ast.fix_missing_locations(changed))
    raise LookupError(mutant.label)


def _equivalent(mutant: Mutant) -> str | None:
    return EQUIVALENT.get((mutant.module, mutant.line, mutant.before, mutant.after))


def _sandbox() -> Path:
    """A copy of the package, its tests and the pytest configuration."""
    where = Path(tempfile.mkdtemp(prefix="aiorunlist-mutants-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "aiorunlist", where / "aiorunlist", ignore=ignore)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", where / "pyproject.toml")
    return where


def _pytest(where: Path, tests: list[str], timeout: float) -> str:
    """``killed``, ``survived`` or ``timeout`` (a hang counts as killed in the totals)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(where)}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p"]
    # --no-cov: the coverage floor in pyproject.toml is for the whole suite; a subset would
    # fail it and every mutant (and the unmutated baseline) would look killed.
    command += ["no:cacheprovider", "--no-header", "--no-cov", *tests]
    try:
        done = subprocess.run(
            command, cwd=where, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if done.returncode == 0 else "killed"


def _default_tests(modules: list[str]) -> list[str]:
    """The tests a mutant of ``modules`` is judged by: each module's own, then ``TESTS``."""
    own = [test for module in modules for test in MODULE_TESTS.get(module, [])]
    if own and all(module in MODULE_TESTS for module in modules):
        return list(dict.fromkeys(own))
    return list(dict.fromkeys([*own, *TESTS]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="a target module (repeatable)")
    parser.add_argument("--tests", action="append", help="a test file to run (repeatable)")
    parser.add_argument("--max-mutants", type=int, default=0, help="a random sample of this size")
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    parser.add_argument("--fail-over", type=float, default=100.0, help="max %% survivors")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument(
        "--match", action="append", help="only mutants whose label holds this text (repeatable)"
    )
    args = parser.parse_args()
    modules: list[str] = args.module or MODULES
    tests: list[str] = args.tests or _default_tests(modules)

    every = [m for module in modules for m in mutants(module)]
    if args.match:
        every = [m for m in every if any(text in m.label for text in args.match)]
    chosen = every
    if args.max_mutants and args.max_mutants < len(every):
        chosen = random.Random(args.seed).sample(  # noqa: S311 (a sample, not a secret)
            every, args.max_mutants
        )
        chosen.sort(key=lambda m: (m.module, m.line, m.index, m.variant))
    if args.list:
        for m in chosen:
            print(m.label)
        print(f"{len(chosen)} of {len(every)} mutants")
        return 0

    jobs = max(1, args.jobs)
    boxes = [_sandbox() for _ in range(jobs)]
    free = list(boxes)
    lock = threading.Lock()
    try:
        # The unmutated copy must pass, or every mutant would look killed.
        for module in modules:
            clean = ast.unparse(ast.parse((ROOT / module).read_text()))
            (boxes[0] / module).write_text(clean)
        baseline = _pytest(boxes[0], tests, args.timeout * 3)
        for module in modules:
            shutil.copy2(ROOT / module, boxes[0] / module)
        if baseline != "survived":
            print(f"the tests fail without any mutant ({baseline}): fix them first")
            return 2

        def run(mutant: Mutant) -> tuple[Mutant, str]:
            with lock:
                box = free.pop()
            try:
                (box / mutant.module).write_text(mutated_source(mutant))
                return mutant, _pytest(box, tests, args.timeout)
            finally:
                shutil.copy2(ROOT / mutant.module, box / mutant.module)
                with lock:
                    free.append(box)

        start = time.monotonic()
        results: list[tuple[Mutant, str]] = []
        with ThreadPoolExecutor(jobs) as pool:
            for n, (mutant, outcome) in enumerate(pool.map(run, chosen), 1):
                results.append((mutant, outcome))
                if outcome == "survived":
                    word = "equivalent" if _equivalent(mutant) else "SURVIVED"
                    print(f"[{n}/{len(chosen)}] {word} {mutant.label}", flush=True)
                elif n % 25 == 0:
                    print(f"[{n}/{len(chosen)}] {time.monotonic() - start:.0f}s", flush=True)
    finally:
        for box in boxes:
            shutil.rmtree(box, ignore_errors=True)

    alive = [m for m, outcome in results if outcome == "survived"]
    equivalent = [m for m in alive if _equivalent(m)]
    survived = [m for m in alive if not _equivalent(m)]
    timeouts = sum(outcome == "timeout" for _, outcome in results)
    killed = len(results) - len(alive)
    judged = len(results) - len(equivalent)
    share = 100 * len(survived) / judged if judged else 0.0
    print(f"\n{len(results)} mutants (of {len(every)}): {killed} killed ", end="")
    print(f"({timeouts} by timeout), {len(equivalent)} equivalent, ", end="")
    print(f"{len(survived)} survived ({share:.1f}% of the non-equivalent)")
    for m in equivalent:
        print(f"  equivalent  {m.label}  ({_equivalent(m)})")
    for m in survived:
        print(f"  survived    {m.label}")
    return 1 if share > args.fail_over else 0


if __name__ == "__main__":
    sys.exit(main())
