"""``dptrain check``: what a user's model must pass before a job spends cluster hours.

    gradients.py  each leaf layer's backward against central finite differences, float64
    ranks.py      the same few steps on 1 and on 2 ranks (mpiexec started here), compared
    command.py    the command: flags, the report (a table or JSON), the exit code
"""
