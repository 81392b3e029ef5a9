"""`ipyrunner` as a stage sees it: `ipyrunner.stage.display`, matplotlib's backend
and the DataFrame codec, and nothing of the kernel's package. Standalone, like
python_stage.py, which points `import ipyrunner` here inside a stage."""
