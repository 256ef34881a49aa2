"""The hand-in's PDF: the executed notebook, exported with a title page.

python report/export_notebook.py student_lab3.ipynb --student-id 312551001 --name "Wang Xiao-Ming"
"""
