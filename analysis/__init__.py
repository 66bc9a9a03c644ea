"""Figures and tables from result folders (installed as ``stair_stepper.analysis``).

``summary`` needs only the standard library; ``figures`` needs matplotlib
(the ``[analysis]`` extra) and is imported only when a figure is drawn.
"""
