"""The web page (Gradio): one module per tab, the frame (`layout.py`), the words (`translations.py`),
what the boxes hold (`forms.py`), the endpoints (`handlers.py`) and the whole page (`page.py`).

It depends on the contract only (scorers are handed in) and imports no torch.
"""
