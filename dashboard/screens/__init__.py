"""The dashboard's screens, one script per page, run by ``st.navigation`` in ``dashboard/app.py``.

Not named ``pages/``: Streamlit runs the files of a ``pages/`` folder beside the entry script
directly (its older multipage mode) until some session first calls ``st.navigation``, which
would let a URL reach a screen without passing through the router.
"""
