"""The decoding loop (harness/decoding.py): the tokens `model.generate` picks, a cache written in place,
finished sequences leaving the batch."""
from __future__ import annotations

import pytest
from conftest import forward_input_shapes

PROMPTS = [f"<|im_start|>user\n{'Tell me more. ' * n}<|im_end|>\n<|im_start|>assistant\n" for n in (1, 5, 3)]


@pytest.fixture
def loaded(tiny_model):
    from harness.models import load_model, load_tokenizer

    model, tokenizer = load_model(tiny_model, "float32"), load_tokenizer(tiny_model, padding_side="left")
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    return model, tokenizer, inputs, tokenizer(PROMPTS, add_special_tokens=False)["input_ids"]


def _generate(model, inputs, new_tokens, end_id, pad_id):
    """`model.generate`'s greedy new tokens per row, up to (without) `end_id`."""
    import torch

    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, temperature=None, top_p=None,
                             top_k=None, eos_token_id=end_id, pad_token_id=pad_id)
    rows = out[:, inputs["input_ids"].shape[1]:].tolist()
    return [row[:row.index(end_id)] if end_id in row else row for row in rows]


def test_greedy_decoding_picks_the_tokens_model_generate_picks(loaded):
    from harness.decoding import Decoding, decode

    model, tokenizer, inputs, rows = loaded
    unbounded = decode(model, rows, Decoding(max_new_tokens=12), end_ids=[-1], pad_id=tokenizer.pad_token_id)
    assert unbounded == _generate(model, inputs, 12, -1, tokenizer.pad_token_id)
    # a token the first row emits mid-way ends that row early, as generate's end-of-sequence does
    end_id = unbounded[0][4]
    ended = decode(model, rows, Decoding(max_new_tokens=12), end_ids=[end_id], pad_id=tokenizer.pad_token_id)
    assert ended == _generate(model, inputs, 12, end_id, tokenizer.pad_token_id)
    assert len(ended[0]) < 12 and end_id not in ended[0]


def test_a_stop_condition_ends_only_its_own_row(loaded):
    from harness.decoding import Decoding, decode

    model, tokenizer, _, rows = loaded
    full = decode(model, rows, Decoding(max_new_tokens=8), end_ids=[-1], pad_id=tokenizer.pad_token_id)
    stopped = []

    def stops(tokens):  # the first row asked about at its third token stops (rows are asked in order)
        if len(tokens) == 3 and not stopped:
            stopped.append(tokens)
            return True
        return False

    with forward_input_shapes(model) as shapes:
        out = decode(model, rows, Decoding(max_new_tokens=8), end_ids=[-1],
                     pad_id=tokenizer.pad_token_id, stops=stops)
    widths = [shape[0] for shape in shapes]
    assert out[0] == full[0][:3] and out[1] == full[1] and out[2] == full[2]
    assert widths[:3] == [3, 3, 3] and set(widths[3:]) == {2}  # the stopped row left; the others ran on


def test_the_kv_cache_is_reserved_once_and_written_in_place(tiny_model):
    import torch

    from harness.decoding import ReservedLayer, batch_cache
    from harness.models import load_model

    model = load_model(tiny_model, "float32")
    cache = batch_cache(model.config, 10)
    assert len(cache.layers) == model.config.num_hidden_layers
    assert all(isinstance(layer, ReservedLayer) for layer in cache.layers)
    layer = cache.layers[0]
    first = torch.ones(2, 1, 4, 3)
    keys, _ = layer.update(first, first)
    buffer = layer._keys.data_ptr()
    keys, values = layer.update(2 * torch.ones(2, 1, 1, 3), 3 * torch.ones(2, 1, 1, 3))
    assert layer._keys.data_ptr() == buffer and keys.shape == (2, 1, 5, 3) and layer.get_seq_length() == 5
    assert keys[:, :, 4].eq(2).all() and values[:, :, 4].eq(3).all() and keys[:, :, :4].eq(1).all()
    layer.batch_select_indices(torch.tensor([1]))
    assert layer.keys.shape == (1, 1, 5, 3) and layer.get_seq_length() == 5
    with pytest.raises(RuntimeError, match="10 tokens"):
        layer.update(torch.ones(1, 1, 6, 3), torch.ones(1, 1, 6, 3))


def test_sampling_reproduces_with_its_generator_seed(loaded):
    import torch

    from harness.decoding import Decoding, decode

    model, tokenizer, _, rows = loaded

    def sample(seed):
        decoding = Decoding(max_new_tokens=10, temperature=0.9, top_p=0.9, top_k=50,
                            generator=torch.Generator().manual_seed(seed))
        return decode(model, rows, decoding, end_ids=[-1], pad_id=tokenizer.pad_token_id)

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


@pytest.mark.parametrize("rows, shared", [
    ([[1, 2, 3], [1, 2, 4]], 2),
    ([[1, 2, 3], [1, 2, 3]], 2),  # identical prompts: each keeps its last token to predict from
    ([[1, 2, 3, 4], [1, 2]], 1),
    ([[5, 2], [1, 2]], 0),
    ([[1, 2, 3]], 0),
])
def test_the_shared_prefix_leaves_every_row_a_token_of_its_own(rows, shared):
    from harness.decoding import shared_prefix_length

    assert shared_prefix_length(rows) == shared


def test_a_long_shared_prefix_is_run_once_and_decodes_as_without_sharing(loaded, monkeypatch):
    import torch

    from harness import decoding as decoding_module
    from harness.decoding import SHARED_PREFIX_MIN_TOKENS, Decoding, decode, shared_prefix_length

    model, tokenizer, _, _ = loaded
    few_shot = tokenizer("Example question and its worked answer. " * 12, add_special_tokens=False)["input_ids"]
    assert len(few_shot) >= SHARED_PREFIX_MIN_TOKENS
    rows = [few_shot + tokenizer(f"Now question {q}{'?' * q}", add_special_tokens=False)["input_ids"] for q in (1, 5, 3)]

    def sample():  # sampled tokens follow the whole distribution, so they show any difference in the logits
        decoding = Decoding(max_new_tokens=10, temperature=1.0, generator=torch.Generator().manual_seed(3))
        return decode(model, rows, decoding, end_ids=[-1], pad_id=tokenizer.pad_token_id)

    with forward_input_shapes(model) as shapes:
        shared = sample()
        monkeypatch.setattr(decoding_module, "SHARED_PREFIX_MIN_TOKENS", 10**9)
        separate = sample()
    assert shared == separate
    prefix = shared_prefix_length(rows)
    assert prefix >= len(few_shot)
    # the prefix once, then only each row's own tokens
    assert shapes[:2] == [(1, prefix), (3, max(len(row) for row in rows) - prefix)]
    assert (3, max(len(row) for row in rows)) in shapes  # without sharing: whole prompts
