"""unipixel: UniPixel (Qwen2.5-VL + SAM 2.1) natively on transformers.

Importing the package registers ``pixel_qwen2_5_vl`` with transformers' Auto classes, so
``AutoConfig``/``AutoModel``/``AutoProcessor.from_pretrained(<checkpoint dir>)`` work without remote code.
"""

from __future__ import annotations

from .configuration import UniPixelConfig
from .model.modeling import UniPixelForConditionalGeneration, UniPixelOutput

__version__ = "0.1.0"


def _register() -> None:
    from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

    AutoConfig.register(UniPixelConfig.model_type, UniPixelConfig, exist_ok=True)
    AutoModel.register(UniPixelConfig, UniPixelForConditionalGeneration, exist_ok=True)
    AutoModelForImageTextToText.register(UniPixelConfig, UniPixelForConditionalGeneration, exist_ok=True)
    try:
        from transformers import AutoProcessor

        from .processing import PatchedQwen2_5_VLProcessor, UniPixelProcessor

        AutoProcessor.register(UniPixelConfig, UniPixelProcessor, exist_ok=True)
        # Released checkpoints record the reference's processor class name; transformers finds registered
        # processors by class name, so register the alias under a private config subclass.
        legacy = type("_ReferenceProcessorConfig", (UniPixelConfig,), {"model_type": "_pixel_qwen2_5_vl_legacy"})
        AutoProcessor.register(legacy, PatchedQwen2_5_VLProcessor, exist_ok=True)
    except ImportError:  # processor needs torchvision; the model does not
        pass


_register()


def __getattr__(name: str) -> object:
    """``from unipixel import UniPixel`` (the Python API) without importing it for every ``import unipixel``."""
    if name == "UniPixel":
        from .api import UniPixel

        return UniPixel
    raise AttributeError(f"module 'unipixel' has no attribute {name!r}")


__all__ = ["UniPixel", "UniPixelConfig", "UniPixelForConditionalGeneration", "UniPixelOutput", "__version__"]
