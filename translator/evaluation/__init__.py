"""Evaluation: metrics (pure functions over strings), reports, plots, and the commands that measure checkpoints.

    metrics.py    sacreBLEU, chrF, BLEU by length, chat metrics, BLEU-1/2, hits@1, reliability (pure functions)
    report.py     the report dict of one evaluated model, its JSON and its table
    plots.py      BLEU by length, reliability and attention figures (bare matplotlib Figures)
    relevance.py  hits@1 of k: the true reply among distractors, ranked by the chat model's own scores
    command.py    `translator evaluate`
    calibrate.py  `translator calibrate`: fit a checkpoint's confidence calibrator on its validation split
"""
