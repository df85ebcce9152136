"""Tiny tokenizers and text encoders shared by the tiny pipeline builders.

Nothing is downloaded: tokenizers are built in memory (a byte-level BPE vocabulary without
merges, so any UTF-8 text tokenizes, one token per byte) and the encoders are random
transformers models created from small configs. :func:`byte_tokenizer` replaces the
``hf-internal-testing`` tokenizers that diffusers' own test suite downloads.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BYTE_VOCAB",
    "byte_tokenizer",
    "tiny_clip_text",
    "tiny_clip_tokenizer",
    "tiny_clip_vision",
    "tiny_gemma2",
    "tiny_glm",
    "tiny_qwen3",
    "tiny_qwen25_vl",
    "tiny_t5",
]

#: tokens of :func:`byte_tokenizer`: 256 byte symbols and four special tokens
BYTE_VOCAB = 260


def byte_tokenizer(*, model_max_length: int = 512, padding_side: str = "right") -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ``<pad>``/``<s>``/``</s>``/``<unk>`` (260 tokens).

    Text is encoded as ``<s>`` followed by one token per UTF-8 byte.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    symbols = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate([*specials, *sorted(symbols)])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # a leading <s> as Gemma/GLM tokenizers add: an empty prompt still has one token
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
        padding_side=padding_side,
    )


def tiny_clip_tokenizer() -> Any:
    from .tiny_diffusers import _clip_tokenizer

    return _clip_tokenizer()


def tiny_clip_text(tokenizer: Any, *, projection: bool = False, hidden: int = 32, layers: int = 2) -> Any:
    """A CLIP text encoder (``CLIPTextModelWithProjection`` when ``projection``) for ``tokenizer``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=layers,
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        projection_dim=hidden,
        hidden_act="gelu",
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def tiny_clip_vision(*, hidden: int = 32, image_size: int = 32, layers: int = 2, patch: int = 4) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=hidden,
            projection_dim=hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            image_size=image_size,
            intermediate_size=37,
            patch_size=patch,
        )
    )


def tiny_t5() -> tuple[Any, Any]:
    """(tokenizer, encoder): a T5 unigram tokenizer and a 2-layer, 32-wide T5 encoder."""
    from .tiny_diffusers import _tiny_t5_encoder, tiny_t5_tokenizer

    tokenizer = tiny_t5_tokenizer()
    return tokenizer, _tiny_t5_encoder(len(tokenizer))


def tiny_gemma2(*, hidden: int = 8, head_dim: int = 4, layers: int = 2) -> tuple[Any, Any]:
    """(tokenizer, ``Gemma2Model``) as Sana and Lumina 2 use (diffusers' test config)."""
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = byte_tokenizer(model_max_length=512)
    config = Gemma2Config(  # type: ignore[call-arg]
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=16,
        num_attention_heads=2,
        num_hidden_layers=layers,
        num_key_value_heads=2,
        vocab_size=BYTE_VOCAB,
        sliding_window=8,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation="eager",
    )
    return tokenizer, Gemma2Model(config)


def tiny_glm(*, hidden: int = 32) -> tuple[Any, Any]:
    """(tokenizer, ``GlmModel``) as CogView4 uses (diffusers' test config)."""
    from transformers import GlmConfig, GlmModel

    tokenizer = byte_tokenizer(model_max_length=1024)
    config = GlmConfig(
        hidden_size=hidden,
        intermediate_size=8,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=8,
        vocab_size=BYTE_VOCAB,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return tokenizer, GlmModel(config)


def tiny_qwen25_vl(*, hidden: int = 16) -> tuple[Any, Any]:
    """(tokenizer, ``Qwen2_5_VLForConditionalGeneration``) as Qwen-Image uses (diffusers' test config)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = byte_tokenizer(model_max_length=1024)
    config = Qwen2_5_VLConfig(  # type: ignore[call-arg]
        text_config={
            "hidden_size": hidden,
            "intermediate_size": hidden,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": BYTE_VOCAB,
        },
        vision_config={
            "depth": 2,
            "hidden_size": hidden,
            "intermediate_size": hidden,
            "num_heads": 2,
            "out_hidden_size": hidden,
        },
        hidden_size=hidden,
        vocab_size=BYTE_VOCAB,
    )
    return tokenizer, Qwen2_5_VLForConditionalGeneration(config).eval()


#: a minimal chat template: what Qwen3-based pipelines (Z-Image) format prompts with
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_qwen3(*, hidden: int = 16) -> tuple[Any, Any]:
    """(tokenizer with a chat template, ``Qwen3Model``) as Z-Image uses (diffusers' test config)."""
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = byte_tokenizer(model_max_length=512)
    tokenizer.chat_template = _CHAT_TEMPLATE
    config = Qwen3Config(
        hidden_size=hidden,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=BYTE_VOCAB,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer, Qwen3Model(config)
