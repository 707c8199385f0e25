"""The learning lab: one view per idea of the RNN -> LSTM -> attention -> Transformer story.

Every view is three functions, so the CLI (`translator lab VIEW`), the app's Learn tab and a
notebook use the same code: `compute(...)` returns plain numbers (JSON-ready), `figure(data)`
draws them (a bare matplotlib Figure, no pyplot state), and `command(..., output=PATH.png)`
writes the PNG and the numbers as PATH.json beside it.

    params      parameters per component with the formula beside each     (params.py)
    gradients   ||dL/dh_t|| over source positions for rnn/lstm/gru; clipping (gradients.py)
    gates       LSTM forget/input/output, GRU reset/update over a sentence   (gates.py)
    exposure    teacher forcing vs free running, scheduled sampling          (exposure.py)
    positions   sinusoidal table and the similarity of positions             (positions.py)
    attention   every layer and head (Transformer), Bahdanau/Luong alignments (attention.py)
    bottleneck  BLEU by source length on concatenated Multi30k pairs          (bottleneck.py)
    softmax     next-token distribution at a temperature, top-k / top-p cuts  (softmax.py)
    beam        the K hypotheses of beam search per step, with scores         (beam.py)
"""
