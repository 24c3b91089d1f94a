"""CachedMultipleNegativesRankingLoss (GradCache) against the plain loss, on the real MiniLM with dropout on."""

import math

import pytest
import torch

from finetuner_core.config import FitConfig
from finetuner_core.models import build_model
from finetuner_core.training import losses
from finetuner_core.training.tasks import QueryDocTask
from finetuner_protocol.data.records import QueryDocItem

PAIRS = [
    ("how do I top up my card", "Top up with a debit card or a bank transfer in the app."),
    ("card not arrived", "Cards arrive within five working days; after that, order a new one."),
    ("exchange rate", "We use the interbank rate on weekdays and add a small fee at weekends."),
    ("close my account", "You can close your account from the settings page at any time."),
    ("why was I charged twice for the same coffee this morning", "A pending charge disappears in a few days."),
    ("pin blocked", "Unblock your PIN at any cash machine."),
    ("change my address", "Update your address under profile."),
    ("refund not showing", "Refunds take up to ten days to show on your statement, depending on the merchant."),
]
RECORDS = [QueryDocItem(query, document) for query, document in PAIRS]
BATCH = list(range(len(PAIRS)))


@pytest.fixture(scope="module")
def model():
    model = build_model("all-MiniLM-L6-v2", None, "cpu")
    return model.train()


def task(loss: str, **options) -> QueryDocTask:
    config = FitConfig(loss=loss, loss_options={"scale": 20.0, **options}, batch_size=8, sampler="random")
    return QueryDocTask(RECORDS, config)


def gradients(model, run) -> tuple[float, dict[str, torch.Tensor]]:
    """The value ``run()`` returns and the parameter gradients it leaves, from a fixed random state."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    value = run()
    return value, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same(expected, actual):
    (expected_value, expected_grads), (value, grads) = expected, actual
    assert value == pytest.approx(expected_value, rel=1e-5)
    assert expected_grads.keys() == grads.keys() and len(grads) > 50
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_dropout_is_on(model):
    assert model.training
    texts = [query for query, _ in PAIRS]
    with torch.no_grad():
        assert not torch.allclose(model.embed(texts), model.embed(texts)), "two passes differ: dropout is on"


@pytest.mark.slow
def test_one_chunk_per_column_gives_the_loss_and_gradients_of_the_plain_loss(model):
    plain = task("MultipleNegativesRankingLoss")
    cached = task("CachedMultipleNegativesRankingLoss", mini_batch_size=len(PAIRS))
    assert isinstance(cached.loss_fn, losses.CachedMultipleNegativesRankingLoss)
    expected = gradients(model, lambda: plain.backward(model, BATCH, 0.5))
    assert_same(expected, gradients(model, lambda: cached.backward(model, BATCH, 0.5)))


@pytest.mark.slow
@pytest.mark.parametrize("symmetric", [False, True])
def test_small_chunks_give_the_loss_and_gradients_of_the_same_passes_with_a_graph(model, symmetric):
    """Chunks of 3 (3 + 3 + 2 queries, then documents): the reference embeds the same chunks in the same order with
    a graph and back-propagates the plain loss through them; the cached loss must replay each chunk's dropout."""
    cached = task("CachedMultipleNegativesRankingLoss", mini_batch_size=3, symmetric=symmetric)
    plain = losses.MultipleNegativesRankingLoss(scale=20.0, symmetric=symmetric)

    def reference() -> float:
        embedded = [
            torch.cat([model.embed(column[i : i + 3]) for i in range(0, len(column), 3)])
            for column in cached.columns(BATCH)
        ]
        loss = plain(*embedded) * 0.5
        loss.backward()
        return float(loss.detach())

    expected = gradients(model, reference)
    after_reference = torch.get_rng_state()
    assert_same(expected, gradients(model, lambda: cached.backward(model, BATCH, 0.5)))
    assert torch.equal(torch.get_rng_state(), after_reference), "the random state goes on as after one pass"


def test_a_non_finite_loss_is_returned_without_gradients(model):
    cached = losses.CachedMultipleNegativesRankingLoss(mini_batch_size=4)
    model.zero_grad(set_to_none=True)
    value = cached.cached_backward(model, [["a", "b"], ["c", "d"]], scale=float("nan"))
    assert math.isnan(value)
    assert all(p.grad is None for p in model.parameters())
