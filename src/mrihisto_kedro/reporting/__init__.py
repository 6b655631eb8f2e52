"""Figures drawn from the results that the library returns (no Kedro imports).

Layering (checked by ``lint-imports``, ``[tool.importlinter]`` in ``pyproject.toml``): this
package sits above ``imaging``, ``evaluation`` and ``sequences``, whose result types it draws
(``QcImages``, ``EvaluatedSplit``, ``Synthesis``), and below ``pipelines``, whose figure nodes
call it. Library code never imports it: a step returns data, a figure node draws it.
"""
