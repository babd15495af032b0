"""Renderings of the JSON result: the HTML report (``render``), Markdown for pull requests
(``markdown``), JUnit XML for CI (``junit``) and before/after comparisons (``diff``).

All of them read the same normalised view of a result (``view.build_view``), so they agree on
numbers, ranking and verdict, and none of them trusts the strings inside a result.
"""
