"""The lab report and the hand-in: a PDF built from measured results, and the notebook export.

python report/build_report.py --profile full --out report/lab3_report.pdf
python report/export_notebook.py student_lab3.ipynb --out report/build/student_lab3.pdf
"""
