"""History buffer of generated images for the CycleGAN discriminators (Shrivastava et al. 2017).

The discriminators are updated with a mix of the latest fakes and fakes from earlier iterations,
which damps oscillation. Behaviour is the reference ``util/image_pool.py``: with
``pool_size == 0`` the input is returned as is; while the pool fills, each new image is stored and
returned; once full, each image is, with probability 1/2, swapped with a random stored image (the
stored one is returned, the new one takes its place), otherwise returned itself.

Unlike the reference (Python's global ``random``), the draws come from the pool's own
``torch.Generator``, and :meth:`ImagePool.state_dict` holds the stored images and that
generator's state, so a resumed run continues exactly as an uninterrupted one.

Pure PyTorch (no Kedro).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ImagePool"]

_SWAP_PROBABILITY = 0.5


class ImagePool:
    """A buffer of up to ``pool_size`` previously generated images (each (C, H, W)).

    Stored images are detached copies on the device they came from; all images in a pool must
    have the same shape.
    """

    def __init__(self, pool_size: int = 50, generator: torch.Generator | None = None) -> None:
        """Create an empty pool.

        Args:
            pool_size: capacity in images; 0 disables the pool (``query`` returns its input).
            generator: CPU random source for the swap decisions. Default: a new generator seeded
                with one draw from the global torch RNG (as ``DataLoader`` seeds its workers),
                so ``torch.manual_seed`` makes runs reproducible.
        """
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        elif generator.device.type != "cpu":
            raise ValueError(f"ImagePool needs a CPU generator, got one on {generator.device}")
        self.pool_size = pool_size
        self.generator = generator
        self._images: list[torch.Tensor] = []

    def __len__(self) -> int:
        """Number of images stored."""
        return len(self._images)

    @property
    def images(self) -> list[torch.Tensor]:
        """The stored images (each (C, H, W)); a shallow copy of the internal list."""
        return list(self._images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same size mixing ``images`` with stored ones, and update the pool.

        Args:
            images: the latest generated images, (N, C, H, W).

        Returns:
            (N, C, H, W), detached from the graph (except with ``pool_size == 0``, where
            ``images`` itself is returned). Row i is ``images[i]`` or an image stored earlier.
        """
        if self.pool_size == 0:
            return images
        if images.dim() != 4:
            raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
        returned: list[torch.Tensor] = []
        for image in images.detach():
            if len(self._images) < self.pool_size:
                self._images.append(image.clone())
                returned.append(image)
                continue
            draw = torch.rand((), generator=self.generator).item()
            if draw > _SWAP_PROBABILITY:
                index = int(torch.randint(0, self.pool_size, (), generator=self.generator).item())
                stored = self._images[index]
                self._images[index] = image.clone()
                returned.append(stored.to(image.device))
            else:
                returned.append(image)
        return torch.stack(returned, 0)

    def state_dict(self) -> dict[str, Any]:
        """Checkpointable state: ``pool_size``, the stored ``images`` and ``rng_state``.

        Holds only ints, tensors and a list of tensors, so it loads with
        ``torch.load(weights_only=True)``.
        """
        return {
            "pool_size": self.pool_size,
            "images": [image.clone() for image in self._images],
            "rng_state": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the pool size must be the same.

        Args:
            state: as returned by :meth:`state_dict`.
        """
        missing = {"pool_size", "images", "rng_state"} - set(state)
        if missing:
            raise KeyError(f"ImagePool state is missing {sorted(missing)}")
        if int(state["pool_size"]) != self.pool_size:
            raise ValueError(
                f"ImagePool state has pool_size {state['pool_size']}, this pool {self.pool_size}"
            )
        images = list(state["images"])
        if len(images) > self.pool_size:
            raise ValueError(
                f"ImagePool state holds {len(images)} images, more than pool_size {self.pool_size}"
            )
        self.generator.set_state(state["rng_state"])
        self._images = [image.detach().clone() for image in images]
