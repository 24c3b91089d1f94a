import math

import pytest
import torch
from sentence_transformers.sentence_transformer import losses as st_losses

from finetuner_core.training.losses import DEFAULT_LOSSES, LOSSES, MINERS, build, check_fits
from finetuner_protocol.data.records import LABELED, QUERY_DOC, SCORED, TEXT_IMAGE


def batch():
    labels = torch.arange(4).repeat_interleave(4)
    embeddings = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1).requires_grad_()
    return embeddings, labels


def vectors(n: int = 8, dim: int = 6, seed: int = 0) -> torch.Tensor:
    """Unnormalised embeddings: every loss must measure with cosine whatever their norm."""
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


SCORES = torch.tensor([0.0, 5.0, 2.5, 4.0, 2.5, 1.0, 3.2, 0.4], dtype=torch.float64)


def call(name: str, loss, embeddings, labels):
    """The loss on a batch of its data shape, built from the 16 embeddings and labels of ``batch``."""
    shape = LOSSES[name].shape
    if shape == TEXT_IMAGE:
        texts = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
        return loss(embeddings, texts, torch.tensor(10.0))
    if shape == QUERY_DOC:
        return loss(embeddings[:8], embeddings[8:])
    if shape == SCORED:
        return loss(embeddings[:8], embeddings[8:], SCORES.float())
    return loss(embeddings, labels)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_gives_a_finite_loss_and_gradient(name):
    embeddings, labels = batch()
    loss = call(name, build(LOSSES, name, None, num_classes=4, embedding_size=8), embeddings, labels)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_every_shape_has_a_default_loss_that_trains_on_it():
    assert set(DEFAULT_LOSSES) == {LABELED, TEXT_IMAGE, QUERY_DOC, SCORED}
    for shape, name in DEFAULT_LOSSES.items():
        assert check_fits(name, shape) == name
    assert {spec.shape for spec in LOSSES.values()} == set(DEFAULT_LOSSES)
    assert [name for name, spec in LOSSES.items() if not spec.pairs] == [
        name for name, spec in LOSSES.items() if spec.shape == LABELED
    ]


def test_a_loss_for_another_shape_is_refused_with_the_losses_that_fit():
    with pytest.raises(ValueError) as info:
        check_fits("TripletMarginLoss", SCORED)
    assert str(info.value) == (
        "TripletMarginLoss trains on labeled items, but this data holds scored pairs; "
        "losses for scored pairs: CoSENTLoss, CosineSimilarityLoss, MarginMSELoss"
    )
    with pytest.raises(ValueError, match=r"is_labeled.*losses for labeled items: TripletMarginLoss, InfoNCELoss"):
        check_fits("MultipleNegativesRankingLoss", LABELED)


@pytest.mark.parametrize("name", sorted(MINERS))
def test_every_miner_returns_valid_triplets(name):
    embeddings, labels = batch()
    anchors, positives, negatives = build(MINERS, name, None)(embeddings, labels)
    assert len(anchors) > 0
    assert (labels[anchors] == labels[positives]).all() and (anchors != positives).all()
    assert (labels[anchors] != labels[negatives]).all()


def test_triplet_loss_matches_a_slow_reference():
    embeddings, labels = batch()
    margin = 0.2
    loss = build(LOSSES, "TripletMarginLoss", {"margin": margin})(embeddings, labels)
    sim = embeddings @ embeddings.T
    terms = []
    for a in range(16):
        for p in range(16):
            for n in range(16):
                if a != p and labels[a] == labels[p] and labels[a] != labels[n]:
                    terms.append(torch.relu(sim[a, n] - sim[a, p] + margin))
    terms = torch.stack(terms)
    assert loss.item() == pytest.approx(terms[terms > 0].mean().item(), rel=1e-5)


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("InfoNCELoss", {"margin": 1}, "InfoNCELoss has no option"),
        ("Nope", None, "unknown name"),
        ("MultipleNegativesRankingLoss", {"scale": 0}, "scale must be a number > 0"),
        ("CachedMultipleNegativesRankingLoss", {"mini_batch_size": 0}, "mini_batch_size must be an integer >= 1"),
        ("CosineSimilarityLoss", {"score_range": [5, 0]}, "score_range must have low < high"),
        ("MarginMSELoss", {"score_range": [0]}, r"score_range must be \[low, high\]"),
        ("CoSENTLoss", {"scale": "big"}, "scale must be a number > 0"),
        ("MultipleNegativesRankingLoss", {"symmetric": "yes"}, "symmetric must be true or false"),
    ],
)
def test_options_are_checked(name, options, message):
    with pytest.raises(ValueError, match=message):
        build(LOSSES, name, options)


def test_options_reach_the_loss():
    assert build(LOSSES, "InfoNCELoss", {"temperature": 0.5}).temperature == 0.5
    cached = build(LOSSES, "CachedMultipleNegativesRankingLoss", {"mini_batch_size": 4, "symmetric": True})
    assert cached.mini_batch_size == 4 and cached.symmetric and cached.scale == 20.0


def test_clip_loss_matches_a_slow_reference():
    images = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    scale = torch.tensor(7.0)
    loss = build(LOSSES, "CLIPLoss", None)(images, texts, scale)
    terms = []
    for i in range(6):
        row = [scale * images[i] @ texts[j] for j in range(6)]
        col = [scale * texts[i] @ images[j] for j in range(6)]
        terms.append(-torch.log_softmax(torch.stack(row), 0)[i] - torch.log_softmax(torch.stack(col), 0)[i])
    assert loss.item() == pytest.approx((torch.stack(terms).sum() / 12).item(), rel=1e-5)


# --- the losses on pairs, each against a plain loop and (where it has one) sentence-transformers' own -----------


def ranking_reference(queries, documents, scale: float, symmetric: bool) -> float:
    """Mean over queries of -log softmax(scale * cos(query, every document))[its own document]."""

    def one_way(rows, columns):
        total = 0.0
        for i in range(len(rows)):
            logits = [scale * cos(rows[i], columns[j]) for j in range(len(columns))]
            total += math.log(sum(math.exp(logit) for logit in logits)) - logits[i]
        return total / len(rows)

    forward = one_way(queries, documents)
    return (forward + one_way(documents, queries)) / 2 if symmetric else forward


@pytest.mark.parametrize("name", ["MultipleNegativesRankingLoss", "CachedMultipleNegativesRankingLoss"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_multiple_negatives_ranking_loss_matches_a_loop_and_sentence_transformers(name, symmetric):
    queries, documents = vectors(seed=1).requires_grad_(), vectors(seed=2).requires_grad_()
    loss = build(LOSSES, name, {"scale": 7.0, "symmetric": symmetric})(queries, documents)
    assert loss.item() == pytest.approx(ranking_reference(queries, documents, 7.0, symmetric), rel=1e-9)

    directions = ("query_to_doc", "doc_to_query") if symmetric else ("query_to_doc",)
    st_loss = st_losses.MultipleNegativesRankingLoss(
        None, scale=7.0, directions=directions, partition_mode="per_direction"
    )
    st_queries, st_documents = queries.detach().clone().requires_grad_(), documents.detach().clone().requires_grad_()
    expected = st_loss.compute_loss_from_embeddings([st_queries, st_documents], None)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(queries.grad, st_queries.grad)
    torch.testing.assert_close(documents.grad, st_documents.grad)


def test_cosent_loss_matches_a_loop_and_sentence_transformers():
    first, second = vectors(seed=3).requires_grad_(), vectors(seed=4).requires_grad_()
    loss = build(LOSSES, "CoSENTLoss", {"scale": 20.0})(first, second, SCORES)
    cosines = [cos(first[i], second[i]) for i in range(8)]
    terms = [math.exp(20.0 * (cosines[j] - cosines[i])) for i in range(8) for j in range(8) if SCORES[i] > SCORES[j]]
    assert len(terms) == 27  # the two 2.5 scores form no pair
    assert loss.item() == pytest.approx(math.log(1 + sum(terms)), rel=1e-9)

    st_first, st_second = first.detach().clone().requires_grad_(), second.detach().clone().requires_grad_()
    expected = st_losses.CoSENTLoss(None, scale=20.0).compute_loss_from_embeddings([st_first, st_second], SCORES)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-9)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(first.grad, st_first.grad)


@pytest.mark.parametrize("score_range", [[0, 5], [-1, 9]])
def test_cosine_similarity_loss_matches_a_loop_and_sentence_transformers(score_range):
    first, second = vectors(seed=5), vectors(seed=6)
    loss = build(LOSSES, "CosineSimilarityLoss", {"score_range": score_range})(first, second, SCORES)
    low, high = score_range
    gold = [(float(s) - low) / (high - low) for s in SCORES]
    reference = sum((cos(first[i], second[i]) - gold[i]) ** 2 for i in range(8)) / 8
    assert loss.item() == pytest.approx(reference, rel=1e-9)
    st_loss = st_losses.CosineSimilarityLoss(None)
    expected = st_loss.compute_loss_from_embeddings([first, second], torch.tensor(gold, dtype=torch.float64))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_cosine_similarity_loss_without_a_range_takes_the_scores_as_they_are():
    first, second = vectors(seed=5), vectors(seed=6)
    scores = torch.linspace(-1, 1, 8, dtype=torch.float64)
    loss = build(LOSSES, "CosineSimilarityLoss", None)(first, second, scores)
    reference = sum((cos(first[i], second[i]) - float(scores[i])) ** 2 for i in range(8)) / 8
    assert loss.item() == pytest.approx(reference, rel=1e-9)


def test_margin_mse_loss_matches_a_loop_over_every_two_pairs():
    first, second = vectors(seed=7), vectors(seed=8)
    loss = build(LOSSES, "MarginMSELoss", {"score_range": [0, 5]})(first, second, SCORES)
    cosines = [cos(first[i], second[i]) for i in range(8)]
    gold = [float(s) / 5 for s in SCORES]
    terms = [((cosines[i] - cosines[j]) - (gold[i] - gold[j])) ** 2 for i in range(8) for j in range(i + 1, 8)]
    assert len(terms) == 28
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-9)


def test_siamese_loss_matches_a_loop_over_all_pairs():
    embeddings, labels = vectors(n=10, seed=9), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    loss = build(LOSSES, "SiameseLoss", {"pos_margin": 0.9, "neg_margin": 0.1})(embeddings, labels)
    positive, negative = [], []
    for i in range(10):
        for j in range(10):
            if i == j:
                continue
            similarity = cos(embeddings[i], embeddings[j])
            if labels[i] == labels[j]:
                positive.append(max(0.0, 0.9 - similarity))
            else:
                negative.append(max(0.0, similarity - 0.1))

    def mean_of_nonzero(terms):
        nonzero = [t for t in terms if t > 0]
        return sum(nonzero) / len(nonzero) if nonzero else 0.0

    assert loss.item() == pytest.approx(mean_of_nonzero(positive) + mean_of_nonzero(negative), rel=1e-6)


@pytest.mark.parametrize("name", sorted(name for name, spec in LOSSES.items() if spec.classes))
def test_class_centre_losses_learn_their_centres_with_their_own_optimizer(name):
    import numpy as np

    from finetuner_core.config import FitConfig
    from finetuner_core.models import build_model
    from finetuner_core.training.loop import train
    from finetuner_core.training.tasks import make_task
    from finetuner_protocol.data.records import LabeledItem

    rng = np.random.default_rng(0)
    records = [LabeledItem(rng.normal(size=6).astype(np.float32) + i % 3, str(i % 3)) for i in range(24)]
    config = FitConfig(model="mlp", loss=name, miner=None, batch_size=6, num_items_per_class=2, max_steps=3)
    model = build_model("mlp", {"input_dim": 6, "hidden_dims": [8]}, "cpu")
    task = make_task(records, config, model)
    (centres,) = list(task.loss_fn.parameters())
    assert centres.shape == (8, 3) and len(task.optimizers) == 1
    before = centres.detach().clone()
    task.optimizers[0].zero_grad()
    task.loss(model, next(iter(task.sampler))).backward()
    task.optimizers[0].step()
    assert not torch.equal(centres.detach(), before), "the centres are trained"
    state = train(model, records, config)
    assert state.step == 3 and np.isfinite(state.loss)
