"""Tune a recipe to your data: the learning-rate range test's command and plot (:mod:`.lr_plot`), and a
pruned search over the recipe's constants on Optuna (:mod:`.space`, :mod:`.study`, :mod:`.report`)."""
