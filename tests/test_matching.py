"""Batched matching: a hand-computed case, the forced-prior conflict rule, and the per-image reference."""

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.testing import assert_close

from rssd.boxes import box_iou, cxcywh_to_xyxy
from rssd.matching import BACKGROUND, NO_REPULSION, match, pad_targets
from rssd.priors import make_priors
from tests.helpers import mixed_batch, tiny_priors
from tests.reference import match_one

# Five priors: the four quadrants of the image, then the whole image.
PRIORS = torch.tensor(
    [[0.25, 0.25, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5], [0.25, 0.75, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 1, 1]]
)
# g0 fills most of the top-left quadrant; g1 straddles the two top quadrants; g2 is the bottom-right quadrant;
# g3 (class 2) fills most of the top-right quadrant and takes that prior from g1.
GT = {
    "boxes": torch.tensor([[0, 0, 0.5, 0.4], [0.3, 0, 0.8, 0.5], [0.5, 0.5, 1, 1], [0.5, 0, 1, 0.45]]),
    "labels": torch.tensor([1, 1, 2, 2]),
}


def test_hand_case() -> None:
    # IoU(g, p) by hand:      p0     p1     p2   p3    p4
    #   g0 (0,0,.5,.4)        0.8    0      0    0     0.2
    #   g1 (.3,0,.8,.5)       0.25   0.4286 0    0     0.25
    #   g2 (.5,.5,1,1)        0      0      0    1     0.25
    #   g3 (.5,0,1,.45)       0      0.9    0    0     0.225
    iou = box_iou(GT["boxes"], cxcywh_to_xyxy(PRIORS))
    assert_close(iou[1, 1], torch.tensor(0.15 / 0.35))
    assert_close(iou[3, 1], torch.tensor(0.9))
    m = match(PRIORS, [GT])
    # g3 and g1 both want p1; g3 has the higher IoU (0.9 > 0.43) and keeps it; g1 takes its best free prior,
    # p4 (p0 went to g0 in the same round). ssd.pytorch would give p1 to the last GT and leave g1 without one.
    assert m.matched_idx.tolist() == [[0, 3, BACKGROUND, 2, 1]]
    assert m.forced.tolist() == [[True, True, False, True, True]]
    assert m.labels.tolist() == [[1, 2, 0, 2, 1]]
    assert_close(m.iou[0], torch.tensor([0.8, 0.9, 0.0, 1.0, 0.25]))
    # repulsion, same class: p0 (g0) -> g1 (IoU 0.25 with p0); p4 (g1) -> g0 (0.2); p1 and p3 have no candidate
    assert m.rep_idx.tolist() == [[1, NO_REPULSION, NO_REPULSION, NO_REPULSION, 0]]
    assert_close(m.rep_boxes[0, 0], GT["boxes"][1])
    assert_close(m.rep_boxes[0, 1], torch.zeros(4))
    # any class: p1 (g3) -> g1 (0.43); p4 (g1) -> g2 (0.25 beats g3's 0.225 and g0's 0.2)
    m_any = match(PRIORS, [GT], same_class=False)
    assert m_any.rep_idx.tolist() == [[1, 1, NO_REPULSION, NO_REPULSION, 2]]


def test_empty_and_single_gt_images() -> None:
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    single = {"boxes": GT["boxes"][:1], "labels": GT["labels"][:1]}
    m = match(PRIORS, [empty, single, GT])
    assert not m.positive[0].any() and (m.labels[0] == 0).all()
    assert m.positive[1].tolist() == [True, False, False, False, False]
    assert (m.rep_idx[1] == NO_REPULSION).all(), "a single-GT image never repels from its own target"
    assert m.matched_idx[2].tolist() == [0, 3, BACKGROUND, 2, 1]
    padded = pad_targets([empty, empty])
    assert padded.boxes.shape == (2, 1, 4) and not padded.valid.any()


def test_identical_gts_get_distinct_priors() -> None:
    box = torch.tensor([[0.1, 0.1, 0.45, 0.45]])
    t = {"boxes": box.repeat(3, 1), "labels": torch.tensor([1, 1, 1])}
    m = match(PRIORS, [t])
    assert sorted(set(m.matched_idx[0][m.forced[0]].tolist())) == [0, 1, 2]


def _check_against_reference(priors, targets, same_class):
    m = match(priors, targets, same_class=same_class)
    for n, t in enumerate(targets):
        matched, labels, loc_t, rep = match_one(priors, t["boxes"], t["labels"], same_class=same_class)
        assert torch.equal(m.matched_idx[n], matched), f"image {n}"
        assert torch.equal(m.labels[n], labels)
        assert torch.equal(m.rep_idx[n], rep)
        pos = matched >= 0
        assert_close(m.loc_targets[n][pos], loc_t[pos], atol=1e-5, rtol=1e-5)


def test_batched_equals_per_image_reference_ssd300() -> None:
    gen = torch.Generator().manual_seed(1)
    priors = make_priors("ssd300")
    for same_class in (True, False):
        _check_against_reference(priors, mixed_batch(gen), same_class)


box = st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.001, 1.0), st.floats(0.001, 1.0)).map(
    lambda b: [b[0], b[1], min(b[0] + b[2], 1.0), min(b[1] + b[3], 1.0)]
)
image = st.lists(st.tuples(box, st.integers(1, 2)), min_size=0, max_size=12)
special = st.sampled_from([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.501, 0.501], [0.2, 0.2, 0.4, 0.6]])
image_with_specials = st.tuples(image, st.lists(st.tuples(special, st.integers(1, 2)), max_size=4)).map(
    lambda t: t[0] + t[1]
)


def _targets(images):
    return [
        {
            "boxes": torch.tensor([b for b, _ in objs], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([c for _, c in objs], dtype=torch.long),
        }
        for objs in images
    ]


@given(images=st.lists(image_with_specials, min_size=1, max_size=3), same_class=st.booleans())
def test_properties(images, same_class) -> None:
    priors = tiny_priors()
    targets = _targets(images)
    m = match(priors, targets, same_class=same_class)
    for n, t in enumerate(targets):
        g = len(t["labels"])
        # every GT keeps at least one positive prior (its forced one), even with identical or tiny GTs
        assert set(m.matched_idx[n][m.positive[n]].tolist()) == set(range(g))
        pos = m.positive[n]
        rep = m.rep_idx[n]
        has = rep != NO_REPULSION
        assert not (has & ~pos).any()
        assert (rep[has] != m.matched_idx[n][has]).all(), "the repulsion GT is never the attraction GT"
        if same_class and has.any():
            assert torch.equal(t["labels"][rep[has]], m.labels[n][has])
        if g == 1:
            assert not has.any()
    _check_against_reference(priors, targets, same_class)


def test_same_as_the_dense_implementation_exactly() -> None:
    # The sparse matching gives every field exactly as the dense (N, G, P) implementation it replaced, and the
    # loss's positives-only path (`full=False`: only pairs that can reach the threshold) the same positives.
    from rssd.matching import _match_core
    from tests.helpers import crowd
    from tests.reference import match_before

    gen = torch.Generator().manual_seed(7)
    priors = make_priors("ssd300")
    box = torch.tensor([[0.1, 0.1, 0.45, 0.45]])
    targets = mixed_batch(gen) + [crowd(20, gen=gen), {"boxes": box.repeat(3, 1), "labels": torch.ones(3).long()}]
    whole_and_flat = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.7]])  # the second overlaps no prior
    targets.append({"boxes": whole_and_flat, "labels": torch.tensor([1, 2])})
    padded = pad_targets(targets)
    for same_class in (True, False):
        m = match(priors, padded, same_class=same_class)
        old = match_before(priors, padded, same_class=same_class)
        fields = ("matched_idx", "positive", "labels", "matched_boxes", "loc_targets", "iou", "forced", "rep_idx")
        for name, before in zip(fields + ("rep_boxes",), old, strict=True):
            assert torch.equal(getattr(m, name), before), name
        core = _match_core(cxcywh_to_xyxy(priors), padded, 0.5, same_class, full=False)
        assert torch.equal(core.positive, m.positive) and torch.equal(core.forced, m.forced)
        pos_img, pos_pri = m.positive.nonzero(as_tuple=True)
        assert torch.equal(core.pos_img, pos_img) and torch.equal(core.pos_pri, pos_pri)
        assert torch.equal(core.pos_gt, m.matched_idx[pos_img, pos_pri])
        assert torch.equal(core.pos_labels, m.labels[pos_img, pos_pri])
        assert torch.equal(core.pos_rep, m.rep_idx[pos_img, pos_pri])


@given(
    images=st.lists(image_with_specials, min_size=1, max_size=3),
    same_class=st.booleans(),
    threshold=st.sampled_from([0.3, 0.5, 0.7]),
)
def test_positives_only_path_equals_full(images, same_class, threshold) -> None:
    # The loss's matching scores only the pairs that can reach the threshold: same positives, targets and forced
    # priors as the full matching, on random, tiny, whole-image and repeated boxes.
    from rssd.matching import _match_core

    priors = cxcywh_to_xyxy(tiny_priors())
    padded = pad_targets(_targets(images))
    full = _match_core(priors, padded, threshold, same_class, full=True)
    fast = _match_core(priors, padded, threshold, same_class, full=False)
    for name in ("positive", "forced", "pos_img", "pos_pri", "pos_gt", "pos_labels", "pos_rep"):
        assert torch.equal(getattr(full, name), getattr(fast, name)), name
