"""Serving: the app's service layer (no Gradio), its fair scheduler, the Learn tab's service, the Gradio app.

    service.py     what the app does, without Gradio: checkpoints, model cache, translate/reply, UserError
    scheduling.py  fair sharing of the app's decoding workers (pieces, least-served request first)
    learn.py       the Learn tab's service layer: each lab view for the loaded checkpoints
    app.py         Gradio Blocks only: Translate, Chat and Learn tabs, /translate and /chat API; `translator app`
"""
