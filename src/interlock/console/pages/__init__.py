"""The console's pages, one module each (routed by ``console/http.py``)."""
