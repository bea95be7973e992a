"""Explain whole datasets on Ray: a folder, a glob, a CSV/Parquet of paths or a Parquet of images.

Sits above both the library (``models=``: one loaded model per Ray actor) and the client
(``server=``: one channel per actor), never the server's code. Needs the ``ray`` extra:
``pip install 'onnxplain[ray]'``.

    from onnxplain.batch import explain_dataset, heatmap
    summary = explain_dataset("photos/", "out/", "grad_cam", models="models/")
"""

from .records import heatmap
from .runner import BatchSummary, explain_dataset

__all__ = ["BatchSummary", "explain_dataset", "heatmap"]
