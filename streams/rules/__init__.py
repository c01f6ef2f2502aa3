"""Traffic validation rules: a YAML rules file → per-call verdicts and violations.

Sans-IO: `load_rules`/`parse_rules` read a file or text, `judge`/`validate` look at one
`ApiCall` and return what each applicable rule says.
"""

from streams.rules.load import load_rules, parse_rules
from streams.rules.model import Problem, Rule, RulesError, Verdict
from streams.rules.validate import judge, summary, validate, violation

__all__ = [
    "Problem",
    "Rule",
    "RulesError",
    "Verdict",
    "judge",
    "load_rules",
    "parse_rules",
    "summary",
    "validate",
    "violation",
]
