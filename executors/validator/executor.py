"""Validator: the Flow's first executor. It parses and checks what users send before anything is stored.

``/fit`` and ``/evaluate`` take item documents and CSV files (``FinetunerDoc``) plus the fit configuration in
``parameters["config"]``; they answer with the validated items, or fail the request with one error that
names every bad row or document. ``/datasets/upload`` checks one batch of a dataset row by row (the trainer
checks the whole dataset when its last batch is stored). Every request needs a valid token
(``parameters["token"]``). Every other endpoint passes through.
"""

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import parse_fit_config
from finetuner_core.data.intake import parse_data, parse_fit_data
from finetuner_core.evaluation.endpoint import model_specs
from finetuner_core.evaluation.options import parse_evaluation_options
from finetuner_core.evaluation.pairs import check_eval_data
from finetuner_core.evaluation.request import eval_set_from_docs, is_retrieval_request
from finetuner_core.storage.workspace import Workspace, workspace_root
from finetuner_core.wire import FinetunerDoc, record_docs


class FinetunerValidator(Executor):
    def __init__(self, workspace_dir: str = "", **kwargs):
        super().__init__(**kwargs)
        self.users = Workspace(workspace_root(workspace_dir)).users

    @requests(on="/fit")
    def fit(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        self.users.authenticate(parameters.get("token"))
        config = parse_fit_config(parameters.get("config", {}))
        if not len(docs):
            return docs  # the data are stored datasets, named in the parameters
        return record_docs(parse_fit_data(docs, config))

    @requests(on="/datasets/upload")
    def upload(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        self.users.authenticate(parameters.get("token"))
        config = parse_fit_config(parameters.get("config", {}))
        return record_docs(parse_data(docs, config.modality, config.csv_options, whole=False))

    @requests(on="/evaluate")
    def evaluate(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        self.users.authenticate(parameters.get("token"))
        config = parse_fit_config(parameters.get("config", {}))
        parse_evaluation_options(parameters.get("evaluation"))
        model_specs(parameters, config.model, config.model_options.model_dump(mode="json"))
        if is_retrieval_request(docs):
            eval_set_from_docs(docs)  # one EvaluationError listing every bad document
            return docs
        splits = parse_data(docs, config.modality, config.csv_options, 1, required=("eval",))
        check_eval_data(splits["eval"], tuple(config.eval_ks))
        return record_docs(splits)

    @requests
    def passthrough(self, docs: DocList[FinetunerDoc], **kwargs) -> DocList[FinetunerDoc]:
        return docs
