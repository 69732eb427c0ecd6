"""The choices of ``nncli sweep``'s options, in one place: the validation metrics it ranks on.

No imports: the command line builds its ``--metric`` choices from this at start-up.
"""

# Validation metrics a sweep can rank on, with the direction that is better; error = 1 - accuracy.
METRICS = {"accuracy": "max", "loss": "min", "error": "min"}
