"""Serving: the app's service layer (no Gradio), its fair scheduler, the Learn tab's service, the Gradio app.

    validation.py  UserError and the limits of every request field, checked before a request is queued
    checkpoints.py the checkpoints offered (metadata, ensembles, found files) and the models loaded once
    service.py     what the app does, without Gradio: translate/reply on the shared workers
    scheduling.py  fair sharing of the app's decoding workers (pieces, least-served request first)
    learn.py       the Learn tab's service layer: each lab view for the loaded checkpoints
    app.py         Gradio Blocks only: Translate, Chat and Learn tabs, /translate and /chat API; `translator app`
"""
