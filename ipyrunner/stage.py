"""`from ipyrunner.stage import display` in a cell: inside a stage it is the stage's
own display (ipyrunner/stages/wrappers/in_sandbox/stage.py, what `import
ipyrunner` finds in a sandbox); imported in the kernel, it is IPython's."""

from IPython.display import display

__all__ = ["display"]
