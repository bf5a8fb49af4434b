"""``segrecipes bench study``: entries x budgets x seeds, scored against the baseline's frontier.

:mod:`.plan` builds every run's config, :mod:`.runs` trains them resumably and reads them back,
:mod:`.frontier` scores them (pure functions of the results), :mod:`.report` writes JSON, CSV and the plot.
"""
