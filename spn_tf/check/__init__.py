"""`python -m spn_tf.check`: an exactness audit of a configuration, a checkpoint or an export.

Each check returns `Verdict`s (a name, pass / fail / n/a, and what was measured); the CLI
(`spn_tf/check/__main__.py`) prints them as a table (or `--json`) and exits non-zero on any
failure. `model_checks` audits a model through its verbs (`log_prob_map`, `log_prob`,
`sample`); `export_checks` audits a SavedModel through its signatures only.
"""

import dataclasses

PASS, FAIL, NA = "pass", "FAIL", "n/a"


@dataclasses.dataclass
class Verdict:
    """One line of the verdict table."""

    check: str
    status: str
    detail: str

    @property
    def failed(self):
        return self.status == FAIL


def verdict(check, ok, detail):
    return Verdict(check, PASS if ok else FAIL, detail)


def format_table(verdicts):
    """The verdict table as text, one check per line."""
    width = max(len(v.check) for v in verdicts)
    lines = [f"{'check':<{width}}  status  measured", f"{'-' * width}  ------  --------"]
    lines += [f"{v.check:<{width}}  {v.status:<6}  {v.detail}" for v in verdicts]
    failed = sum(v.failed for v in verdicts)
    lines.append(f"{len(verdicts)} checks, {failed} failed" if failed else
                 f"{len(verdicts)} checks, all passed (n/a: not applicable, see the line)")
    return "\n".join(lines)
