"""Run many `workbench ...` command lines as separate processes, cheaply.

    python -m tests.reliability.clirun CASES.json RESULTS.json [--light]

Each case {"name", "argv", "cwd", "env"} runs in its own process, forked from this one
after it has imported the workbench and torch once (a fresh `python -m workbench` spends
~3 s importing torch on a busy 2-core machine; a fork ~0.1 s). The child is what
`python -m workbench ARGV` is: ``sys.exit(workbench.cli.main(argv))`` with the default
warning filters, stdout and stderr on their own files at the file-descriptor level (so
C libraries' and Python warnings' output is caught too), and an uncaught exception
printed as a traceback, as the interpreter does. RESULTS.json gets per case: rc (negative:
killed by that signal), stdout, stderr.

Only POSIX (os.fork); the tests skip elsewhere. The parent never runs a torch op, so no
thread pool exists at fork time.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback


def _child(case: dict, out_fd: int, err_fd: int) -> None:
    code = 1
    try:
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.environ.update(case.get("env") or {})
        for name in case.get("unset_env") or ():
            os.environ.pop(name, None)
        if case.get("cwd"):
            os.chdir(case["cwd"])
        from workbench.cli import main

        sys.argv = ["workbench", *case["argv"]]
        try:
            code = main(list(case["argv"]))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except BaseException:  # what the interpreter would print
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def run_cases(cases: list[dict]) -> dict[str, dict]:
    results = {}
    for case in cases:
        started = time.perf_counter()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(case, out.fileno(), err.fileno())
            _, status = os.waitpid(pid, 0)
            out.seek(0)
            err.seek(0)
            results[case["name"]] = {"rc": os.waitstatus_to_exitcode(status), "argv": case["argv"],
                                     "stdout": out.read().decode("utf-8", "replace"),
                                     "stderr": err.read().decode("utf-8", "replace"),
                                     "time_s": round(time.perf_counter() - started, 3)}
    return results


def main() -> int:
    cases_path, results_path = sys.argv[1], sys.argv[2]
    with open(cases_path, encoding="utf-8") as fh:
        cases = json.load(fh)
    import workbench.cli  # noqa: F401

    if "--light" in sys.argv[3:]:  # the cases need no engine (usage errors, no display)
        results = run_cases(cases)
        with open(results_path, "w", encoding="utf-8") as fh:
            json.dump(results, fh)
        return 0
    # Import once what the commands import (their first use in a child then costs nothing).
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (the optimizers import it on first use: ~3 s)

    import workbench.commands.evaluate  # noqa: F401
    import workbench.engine.trainer  # noqa: F401
    import workbench.tasks
    for target in workbench.tasks.TASKS.values():
        try:
            __import__(target.partition(":")[0])
        except ImportError:
            pass
    results = run_cases(cases)
    with open(results_path, "w", encoding="utf-8") as fh:
        json.dump(results, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
