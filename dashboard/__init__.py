"""tastebud's Streamlit dashboard: ``app.py`` routes to ``pages/``; reads go through ``reads.py``."""
