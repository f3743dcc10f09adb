"""Figures and the HTML report: map figures (map_figures.py) and the self-contained run page (html.py)."""
