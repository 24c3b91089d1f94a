"""Validator: the Flow's first executor. It parses and checks what users send before anything is stored.

``/fit`` and ``/evaluate`` take item documents and CSV files (``FinetunerDoc``) plus the fit configuration in
``parameters["config"]``; they answer with the validated items, or fail the request with one error that
names every bad row or document. Every other endpoint passes through.
"""

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import parse_fit_config
from finetuner_core.data.intake import parse_data, parse_fit_data
from finetuner_core.wire import FinetunerDoc, record_docs


class FinetunerValidator(Executor):
    @requests(on="/fit")
    def fit(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        config = parse_fit_config(parameters.get("config", {}))
        return record_docs(parse_fit_data(docs, config))

    @requests(on="/evaluate")
    def evaluate(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        config = parse_fit_config(parameters.get("config", {}))
        return record_docs(parse_data(docs, config.modality, config.csv_options, 1, required=("eval",)))

    @requests
    def passthrough(self, docs: DocList[FinetunerDoc], **kwargs) -> DocList[FinetunerDoc]:
        return docs
