"""Validator: the Flow's first executor. It parses and checks what users send before anything is stored.

``/fit`` and ``/evaluate`` take item documents and CSV files (``FinetunerDoc``) plus the fit configuration in
the parameters' ``config``; they answer with the validated items, or fail the request with one error that
names every bad row or document. ``/datasets/upload`` checks one batch of a dataset row by row (the trainer
checks the whole dataset when its last batch is stored). Every request needs a valid token
(the parameters' ``token``). Every other endpoint passes through.
"""

from docarray import DocList
from jina import Executor, requests

from finetuner_core.config import FitConfig
from finetuner_core.evaluation.endpoint import check_model_sources, model_specs
from finetuner_core.evaluation.options import parse_evaluation_options
from finetuner_core.evaluation.pairs import check_eval_data
from finetuner_core.evaluation.request import eval_set_from_docs, is_retrieval_request
from finetuner_core.fit_request import fit_config, with_resolved_model
from finetuner_core.in_thread import in_thread
from finetuner_core.parent import stop_with_parent
from finetuner_core.storage.users import User
from finetuner_core.training.distributed_options import for_request
from finetuner_core.workspace import Workspace, workspace_root
from finetuner_protocol import backbones, endpoints
from finetuner_protocol.data.intake import parse_data, parse_fit_data
from finetuner_protocol.params import EvaluateParams, FitParams, UploadParams, parse_params, request_token
from finetuner_protocol.wire import FinetunerDoc, record_docs


class FinetunerValidator(Executor):
    def __init__(self, workspace_dir: str = "", model_roots: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        stop_with_parent()  # no orphan outlives the Flow
        self.home = Workspace(workspace_root(workspace_dir))
        self.users = self.home.users
        self.model_roots = backbones.model_roots(model_roots)  # folders whose models a request may name

    def _fit_config(self, raw: dict, user: User) -> FitConfig:
        """A request's fit configuration; a model only the resolver can place (a Hugging Face id, a stored model)
        resolved as the trainer does, to know what its data must hold."""
        config = fit_config(raw, self.model_roots, self.home.runs, None if user.admin else user.id)
        if config.whole_modality is None:
            config = with_resolved_model(config, roots=self.model_roots, store=self.home.models)
        return config

    @requests(on=endpoints.FIT)
    @in_thread
    def fit(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        user = self.users.authenticate(request_token(parameters))
        config = self._fit_config(parse_params(FitParams, parameters).config, user)
        for_request(config.distributed, {})  # other machines' addresses are the operator's, not a fit's
        if not len(docs):
            return docs  # the data are stored datasets, named in the parameters
        return record_docs(parse_fit_data(docs, config))

    @requests(on=endpoints.DATASETS_UPLOAD)
    @in_thread
    def upload(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        user = self.users.authenticate(request_token(parameters))
        config = self._fit_config(parse_params(UploadParams, parameters).config, user)
        return record_docs(parse_data(docs, config.modality, config.csv_options, whole=False))

    @requests(on=endpoints.EVALUATE)
    @in_thread
    def evaluate(self, docs: DocList[FinetunerDoc], parameters: dict, **kwargs) -> DocList[FinetunerDoc]:
        self.users.authenticate(request_token(parameters))
        params = parse_params(EvaluateParams, parameters)
        config = fit_config(params.config, self.model_roots)
        parse_evaluation_options(params.evaluation)
        specs = model_specs(params.model_dump(), config.model, config.model_options.model_dump(mode="json"))
        check_model_sources(specs, self.model_roots)
        if is_retrieval_request(docs):
            eval_set_from_docs(docs)  # one EvaluationError listing every bad document
            return docs
        splits = parse_data(docs, config.modality, config.csv_options, 1, required=("eval",))
        check_eval_data(splits["eval"], tuple(config.eval_ks))
        return record_docs(splits)

    @requests
    async def passthrough(self, docs: DocList[FinetunerDoc], **kwargs) -> DocList[FinetunerDoc]:
        return docs
