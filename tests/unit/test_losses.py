import pytest
import torch

from finetuner_core.training.losses import LOSSES, MINERS, build


def batch():
    labels = torch.arange(4).repeat_interleave(4)
    embeddings = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1).requires_grad_()
    return embeddings, labels


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_gives_a_finite_loss_and_gradient(name):
    embeddings, labels = batch()
    if LOSSES[name].pairs:
        texts = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
        loss = build(LOSSES, name, None)(embeddings, texts, torch.tensor(10.0))
    else:
        loss = build(LOSSES, name, None, num_classes=4, embedding_size=8)(embeddings, labels)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


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


def test_options_are_checked():
    with pytest.raises(ValueError, match="InfoNCELoss has no option"):
        build(LOSSES, "InfoNCELoss", {"margin": 1})
    with pytest.raises(ValueError, match="unknown name"):
        build(LOSSES, "Nope", None)
    assert build(LOSSES, "InfoNCELoss", {"temperature": 0.5}).temperature == 0.5


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


@pytest.mark.parametrize("name", sorted(name for name, spec in LOSSES.items() if spec.classes))
def test_class_centre_losses_learn_their_centres_with_their_own_optimizer(name):
    import numpy as np

    from finetuner_core.config import FitConfig
    from finetuner_core.data.records import LabeledItem
    from finetuner_core.models import build_model
    from finetuner_core.training.loop import train
    from finetuner_core.training.tasks import make_task

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
