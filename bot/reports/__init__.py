"""Reports: the figures a leader builds by hand every Friday, over a scope and a period.

`period.py` reads 本周 / 上月 / `2026-10-01~2026-12-31`; `scope.py` says what a scope covers and who may
see it; `figures.py` has one function per figure (its formula in its docstring); `card.py` draws the
report card and the chart data. Drawing PNGs and writing workbooks happen outside `bot/` (cards/).
"""
