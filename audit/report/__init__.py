"""Renderings of the JSON result: the HTML report (``render``), Markdown for pull requests
(``markdown``), JUnit XML for CI (``junit``), before/after comparisons (``diff``), the example
reports in ``reports/`` (``examples``) and the ``audit.toml`` reference (``configdoc``).

All of them read the same normalised view of a result (``view.build_view``), so they agree on
numbers, ranking and verdict, and none of them trusts the strings inside a result.
"""
