"""Developer sessions: tests on every supported Python, lint, typing, benchmarks.

nox -s tests        # every Python in the classifiers that is installed
nox -s lint typing  # ruff and mypy --strict
nox -s docs         # the HTML docs (docs/_build/html), Sphinx warnings as errors
nox -s readme       # the README's command-line block, verbatim, in a fresh venv
nox -s fleet        # the fleet's shared rate limit and acceptance checks (needs redis-server)
nox -s mutation     # do the tests notice small wrong changes in the sans-I/O modules?
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typing"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)


def install_groups(session: nox.Session, *groups: str, editable: bool = True) -> None:
    deps: list[str] = []
    for group in groups:
        deps.extend(nox.project.dependency_groups(PYPROJECT, group))
    session.install(*(["-e", "."] if editable else ["."]), *deps)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (loopback only; warnings are errors)."""
    install_groups(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    install_groups(session, "lint", editable=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and a file that uses the public API."""
    install_groups(session, "typing")
    session.run("mypy", "aiorunlist", "tests", "examples")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML documentation into docs/_build/html; any Sphinx warning fails the build.

    -E re-reads every page, so a warning is reported on every build, not only the first.
    Offline by design: no intersphinx, nothing fetched.
    """
    install_groups(session, "docs")
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-E",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


@nox.session
def readme(session: nox.Session) -> None:
    """The README's command-line block, verbatim, in a copy of the clone with a fresh venv."""
    install_groups(session, "test")
    session.run(
        "pytest",
        "tests/test_cli_readme.py",
        "-k",
        "verbatim",
        "-rs",
        *session.posargs,
        env={"README_VENV": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark aiorunlist against a raw aiohttp+orjson floor and openai-python.

    nox -s bench                # the full run (docs/performance.md has the figures)
    nox -s bench -- --quick     # fewer runs and rounds, a smoke test
    """
    install_groups(session, "bench")
    session.run("python", "benchmarks/bench.py", *session.posargs)
    # Export speed into SQLite and PostgreSQL next to jsonl (docs/sinks.md).
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/sinks.py", *quick)


@nox.session
def reliability(session: nox.Session) -> None:
    """Chaos, outage and load figures against the fake server (docs/reliability.md)."""
    install_groups(session, "test")
    session.run("python", "benchmarks/reliability.py", *session.posargs)


@nox.session
def throttled(session: nox.Session) -> None:
    """Rate-limited and distant servers: share of the limit used, 429s, wall time vs. minimum.

    nox -s throttled                # the full run (docs/performance.md has the figures)
    nox -s throttled -- --quick     # fewer threads, a smoke test
    """
    install_groups(session, "bench")
    session.run("python", "benchmarks/throttled.py", *session.posargs)


@nox.session
def fleet(session: nox.Session) -> None:
    """K clients sharing one rate limit through Redis with and without the shared control,
    then the fleet's acceptance checks at full size (docs/fleet.md has the figures; needs
    redis-server on PATH, PostgreSQL's binaries for --postgres).

    nox -s fleet                             # the rate table, then every check, full size
    nox -s fleet -- --only kill,rate         # some checks (kill, redelivery, redis, rate,
                                             # pause, outage, scaling, fatal)
    nox -s fleet -- --quick --postgres       # the tests' reduced sizes; kill chaos on PostgreSQL
    python benchmarks/fleet_rate.py --headers per-minute
    """
    install_groups(session, "test")
    session.run("python", "benchmarks/fleet_rate.py")
    session.run("python", "benchmarks/fleet_acceptance.py", *session.posargs)


@nox.session
def mutation(session: nox.Session) -> None:
    """Mutation testing of the sans-I/O modules (benchmarks/mutate.py); fails over 5% survivors.

    nox -s mutation                                   # every mutant
    nox -s mutation -- --max-mutants 150 --jobs 2     # a reproducible sample, two at a time
    nox -s mutation -- --module aiorunlist/_convert.py   # the converter, with its own tests
    """
    install_groups(session, "test")
    session.run("python", "benchmarks/mutate.py", "--fail-over", "5", *session.posargs)
