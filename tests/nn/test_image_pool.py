"""ImagePool: reference behaviour, own seeded random source, checkpointable state."""

from __future__ import annotations

import io

import pytest
import torch

from mrihisto_kedro.nn.image_pool import ImagePool


def batch(start: int, n: int = 4) -> torch.Tensor:
    """n images (1, 2, 2) whose values are their ids start, start + 1, ..."""
    ids = torch.arange(start, start + n, dtype=torch.float32)
    return ids.view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()


def ids_of(images: torch.Tensor) -> list[int]:
    """The id of each image of a batch made by :func:`batch`."""
    return [int(v) for v in images[:, 0, 0, 0].tolist()]


def seeded_pool(seed: int, size: int = 6) -> ImagePool:
    return ImagePool(size, generator=torch.Generator().manual_seed(seed))


def test_pool_size_zero_returns_input() -> None:
    images = batch(0).requires_grad_(True)
    assert ImagePool(0).query(images) is images


def test_while_filling_returns_new_images_and_stores_them() -> None:
    pool = seeded_pool(0)
    x = batch(0, 4).requires_grad_(True)
    out = pool.query(x)
    assert torch.equal(out, x.detach()) and not out.requires_grad
    assert len(pool) == 4
    out = pool.query(batch(4, 2))  # exactly fills the pool: still the inputs
    assert ids_of(out) == [4, 5]
    assert [int(im[0, 0, 0]) for im in pool.images] == list(range(6))


def test_full_pool_returns_pool_or_input_and_swaps() -> None:
    pool = seeded_pool(1)
    pool.query(batch(0, 6))
    seen_stored = seen_new = 0
    for step in range(40):
        start = 100 + 10 * step
        before = {int(im[0, 0, 0]) for im in pool.images}
        out = pool.query(batch(start, 4))
        assert out.shape == (4, 1, 2, 2)
        after = {int(im[0, 0, 0]) for im in pool.images}
        assert len(pool) == 6
        for position, value in enumerate(ids_of(out)):
            if value == start + position:
                seen_new += 1
            else:  # a stored image (possibly one of this batch stored a moment earlier)
                assert value in before or start <= value < start + position
                seen_stored += 1
        # every returned stored image left the pool, every image that entered came from the input
        assert after - before <= set(range(start, start + 4))
    assert 0.35 < seen_stored / (seen_stored + seen_new) < 0.65  # about half, as in the reference


def test_same_seed_same_sequence_other_seed_differs() -> None:
    def run(seed: int) -> list[list[int]]:
        pool = seeded_pool(seed)
        return [ids_of(pool.query(batch(10 * step, 4))) for step in range(12)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_default_generator_follows_torch_manual_seed() -> None:
    def run() -> list[list[int]]:
        torch.manual_seed(123)
        pool = ImagePool(3)
        return [ids_of(pool.query(batch(10 * step, 2))) for step in range(10)]

    assert run() == run()


def test_state_round_trip_continues_identically() -> None:
    reference = seeded_pool(5)
    for step in range(5):
        reference.query(batch(10 * step, 3))
    buffer = io.BytesIO()
    torch.save(reference.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    restored = seeded_pool(999)  # different seed: the state must override it
    restored.load_state_dict(state)
    assert len(restored) == len(reference)
    for step in range(5, 15):
        images = batch(10 * step, 3)
        assert torch.equal(restored.query(images), reference.query(images))


def test_state_dict_is_a_snapshot() -> None:
    pool = seeded_pool(2)
    pool.query(batch(0, 6))
    state = pool.state_dict()
    pool.query(batch(50, 6))
    fresh = seeded_pool(0)
    fresh.load_state_dict(state)
    assert [int(im[0, 0, 0]) for im in fresh.images] == list(range(6))


def test_load_state_validation() -> None:
    pool = seeded_pool(0, size=4)
    with pytest.raises(ValueError, match="pool_size 6"):
        pool.load_state_dict(seeded_pool(0, size=6).state_dict())
    with pytest.raises(KeyError, match="rng_state"):
        pool.load_state_dict({"pool_size": 4, "images": []})


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(-1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ImagePool(2).query(torch.zeros(2, 3, 3))
