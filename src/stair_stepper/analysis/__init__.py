"""Figures and tables from result folders: read, compute, render; nothing here measures.

``summary`` needs only the standard library; ``figures`` needs matplotlib
(the ``[analysis]`` extra) and is imported only when a figure is drawn.
"""
