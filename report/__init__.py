"""The hand-in's PDF: the executed notebook, exported with a title page (export_notebook.py)."""
