"""`soups playground`: a local web page where a person moves sliders, watches the soup's answer change,
finds their weights from a few choices and exports a recipe (DESIGN.md "Layout": a local web app over
the library). session.py holds the state without UI; app.py is the Gradio page.
"""
